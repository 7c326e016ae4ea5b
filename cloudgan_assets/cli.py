"""``python -m cloudgan_assets.cli``: manage ``products`` partitions on the local Dagster instance.

    python -m cloudgan_assets.cli add S3A_SL_1_RBT____2024...   # add products partitions by name
    python -m cloudgan_assets.cli list                          # list them

Uses ``$DAGSTER_HOME`` like the ``dagster`` CLI. Names may carry ``.SEN3`` or ``.zip``; the key is
the bare product name.
"""

from __future__ import annotations

import argparse
import sys

import dagster as dg

from cloudgan_assets.partitions import products_partitions
from cloudgan_core.slstr.product import product_id


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cloudgan_assets.cli", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="add products partitions")
    add.add_argument("names", nargs="+")
    sub.add_parser("list", help="list products partitions")
    args = ap.parse_args(argv)
    with dg.DagsterInstance.get() as instance:
        if args.command == "add":
            keys = [product_id(n.rstrip("/").rsplit("/", 1)[-1]) for n in args.names]
            bad = [k for k in keys if "," in k or "..." in k or "_SL_1_RBT___" not in k]
            if bad:
                print(f"not SL_1_RBT product names: {', '.join(bad)}", file=sys.stderr)
                return 2
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
