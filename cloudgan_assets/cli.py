"""``python -m cloudgan_assets.cli``: manage ``products`` partitions on the local Dagster instance.

    python -m cloudgan_assets.cli add S3A_SL_1_RBT____2024...   # add products partitions by name
    python -m cloudgan_assets.cli list                          # list them
    python -m cloudgan_assets.cli run S3A_SL_1_RBT____2024...   # run a product's whole chain (process_product)

Uses ``$DAGSTER_HOME`` like the ``dagster`` CLI. Names may carry ``.SEN3`` or ``.zip`` (or be a path
to such a file; its last part counts); the key is the bare product name. Every name must be an
SL_1_RBT product name (``cloudgan_core.slstr.names.validate_product_id``), else nothing is added
and the exit status is 2.

``run`` adds the partition when needed and runs the ``process_product`` job for it through the
instance, with the executor ``$CLOUDGAN_EXECUTOR`` names (in-process by default; ``celery`` sends
the steps to Celery workers). The storage root and inbox, resolved here to absolute paths, travel
in the run's config, so every worker reads and writes the same folders. Exit status 0 when the run
succeeded, 1 when it failed.
"""

from __future__ import annotations

import argparse
import sys

import dagster as dg

from cloudgan_assets.partitions import products_partitions
from cloudgan_core.slstr.names import ProductNameError, validate_product_id


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cloudgan_assets.cli", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="add products partitions")
    add.add_argument("names", nargs="+")
    sub.add_parser("list", help="list products partitions")
    run = sub.add_parser("run", help="run the process_product job for one product (adds the partition if needed)")
    run.add_argument("names", nargs=1, metavar="name")
    args = ap.parse_args(argv)
    keys, bad = [], []
    for name in args.names if args.command in ("add", "run") else []:
        try:
            keys.append(validate_product_id(name.rstrip("/").rsplit("/", 1)[-1], "command line"))
        except ProductNameError as exc:
            bad.append(str(exc))
    if bad:  # checked before the instance is opened: a bad name adds nothing
        print("\n".join(bad), file=sys.stderr)
        return 2
    with dg.DagsterInstance.get() as instance:
        if args.command == "run":
            return run_product(instance, keys[0])
        if args.command == "add":
            existing = set(instance.get_dynamic_partitions(products_partitions.name))
            new = [k for k in dict.fromkeys(keys) if k not in existing]
            instance.add_dynamic_partitions(products_partitions.name, new)
            print(f"added {len(new)} partition(s); {len(keys) - len(new)} already present")
        else:
            for key in instance.get_dynamic_partitions(products_partitions.name):
                print(key)
    return 0


def run_product(instance: dg.DagsterInstance, key: str) -> int:
    """Run ``process_product`` for ``key`` (adding the partition when missing); 0 on success."""
    from cloudgan_assets.definitions import process_product_job
    from cloudgan_assets.resources import CloudGANStorage

    if key not in set(instance.get_dynamic_partitions(products_partitions.name)):
        instance.add_dynamic_partitions(products_partitions.name, [key])
    result = dg.execute_job(dg.reconstructable(process_product_job), instance=instance,
                            run_config=CloudGANStorage().run_config(), tags={"dagster/partition": key},
                            raise_on_error=False)
    with result:
        print(f"{'ok' if result.success else 'FAILED'}: process_product for {key} (run {result.run_id})")
        return 0 if result.success else 1


if __name__ == "__main__":
    raise SystemExit(main())
