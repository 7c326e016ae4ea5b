"""``python -m cloudgan_assets.cli``: manage ``products`` partitions on the local Dagster instance.

    python -m cloudgan_assets.cli add S3A_SL_1_RBT____2024...   # add products partitions by name
    python -m cloudgan_assets.cli list                          # list them

Uses ``$DAGSTER_HOME`` like the ``dagster`` CLI. Names may carry ``.SEN3`` or ``.zip`` (or be a path
to such a file; its last part counts); the key is the bare product name. Every name must be an
SL_1_RBT product name (``cloudgan_core.slstr.names.validate_product_id``), else nothing is added
and the exit status is 2.
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
    args = ap.parse_args(argv)
    keys, bad = [], []
    for name in args.names if args.command == "add" else []:
        try:
            keys.append(validate_product_id(name.rstrip("/").rsplit("/", 1)[-1], "command line"))
        except ProductNameError as exc:
            bad.append(str(exc))
    if bad:  # checked before the instance is opened: a bad name adds nothing
        print("\n".join(bad), file=sys.stderr)
        return 2
    with dg.DagsterInstance.get() as instance:
        if args.command == "add":
            existing = set(instance.get_dynamic_partitions(products_partitions.name))
            new = [k for k in dict.fromkeys(keys) if k not in existing]
            instance.add_dynamic_partitions(products_partitions.name, new)
            print(f"added {len(new)} partition(s); {len(keys) - len(new)} already present")
        else:
            for key in instance.get_dynamic_partitions(products_partitions.name):
                print(key)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
