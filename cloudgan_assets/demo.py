"""``python -m cloudgan_assets.demo``: the whole pipeline, offline, on simulated sample products.

Writes a few small simulated SL_1_RBT products into the inbox, registers them as ``products``
partitions on the local Dagster instance (``$DAGSTER_HOME``), materializes every partitioned asset
for each product (one run per partition, in one process), then the assets that span all products.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import dagster as dg

from cloudgan_core.atomic import write_text
from cloudgan_core.simulate import product_name, simulate_product
from cloudgan_core.slstr.product import product_id
from cloudgan_core.storage import PROJECT_DIR, default_inbox, default_storage_root

#: The instance settings written into a new ``$DAGSTER_HOME`` (run queue, run monitoring).
INSTANCE_CONFIG = PROJECT_DIR / "deploy" / "dagster.local.yaml"
#: What earlier versions of the demo wrote; such a file is replaced by :data:`INSTANCE_CONFIG`.
_OLD_DEMO_CONFIG = "telemetry:\n  enabled: false\n"

#: (seed, cloud cover, land fraction) of the sample products: a clear one for surfaces, cloudier ones for masks.
SAMPLES = ((11, 0.03, 0.35), (12, 0.30, 0.25), (13, 0.45, 0.40), (14, 0.60, 0.10))
SAMPLE_SHAPE = (768, 1024)
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def make_samples(inbox: Path) -> list[str]:
    """Simulate the sample products into ``inbox``; returns their ids.

    They are written afresh on every run (the simulator is deterministic: the same bytes as long as
    it is unchanged), so samples left by an older version of the simulator are replaced rather than
    reused.
    """
    inbox.mkdir(parents=True, exist_ok=True)
    keys = []
    for seed, cover, land in SAMPLES:
        simulate_product(inbox, seed=seed, rows=SAMPLE_SHAPE[0], cols=SAMPLE_SHAPE[1], cloud_cover=cover,
                         land_fraction=land, as_zip=True)
        keys.append(product_id(product_name(seed)))
    return keys


def install_instance_config(home: Path) -> bool:
    """Copy :data:`INSTANCE_CONFIG` to ``home/dagster.yaml`` unless ``home`` has its own settings
    (a file the old demo wrote, telemetry only, is replaced). Returns whether it was written."""
    target = home / "dagster.yaml"
    if target.exists() and target.read_text(encoding="utf-8") != _OLD_DEMO_CONFIG:
        return False
    home.mkdir(parents=True, exist_ok=True)
    write_text(target, INSTANCE_CONFIG.read_text(encoding="utf-8"))
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inbox", type=Path, default=None, help="inbox folder (default: userdata/product_store)")
    ap.add_argument("--init-home", action="store_true",
                    help=f"only write {INSTANCE_CONFIG.relative_to(PROJECT_DIR)} into $DAGSTER_HOME (unless it has a "
                         "dagster.yaml) and exit")
    args = ap.parse_args(argv)
    os.environ.setdefault("DAGSTER_HOME", str(PROJECT_DIR / "dagster_home"))
    home = Path(os.environ["DAGSTER_HOME"])
    if install_instance_config(home):
        print(f"wrote {home / 'dagster.yaml'} (run queue: one run per partition; run monitoring on)")
    if args.init_home:
        return 0
    if args.inbox:
        os.environ["CLOUDGAN_INBOX"] = str(args.inbox)
    from cloudgan_assets.definitions import defs
    from cloudgan_assets.partitions import products_partitions

    inbox = default_inbox()
    t0 = time.perf_counter()
    keys = make_samples(inbox)
    print(f"sample products in {inbox}: {len(keys)}")
    instance = dg.DagsterInstance.get()
    instance.add_dynamic_partitions(products_partitions.name, keys)
    failed = []

    def run(label: str, job: dg.JobDefinition, partition_key: str | None = None, selection=None) -> None:
        t = time.perf_counter()
        result = job.execute_in_process(partition_key=partition_key, instance=instance, raise_on_error=False,
                                        run_config=QUIET, asset_selection=selection)
        print(f"  {'ok' if result.success else 'FAILED':6s} {label}  ({time.perf_counter() - t:.1f} s)")
        if not result.success:
            failed.append(label)

    print("per product: products -> masks, false_color -> tiles -> sorted_tiles -> synthetic_clouds")
    for key in keys:
        run(key, defs.resolve_job_def("process_product"), key)
    everything = defs.resolve_implicit_global_asset_job_def()
    print("across products: surface_tiles, composites (per product), training_set, quality_report")
    run("surface_tiles", everything, selection=[dg.AssetKey("surface_tiles")])
    for key in keys:
        run(f"composites {key}", defs.resolve_job_def("composite_product"), key)
    run("training_set + quality_report", defs.resolve_job_def("build_training_set"))
    root = default_storage_root()
    print(f"done in {time.perf_counter() - t0:.1f} s; outputs under {root}")
    zip_path = root / "training_set" / "training_set.zip"
    if zip_path.exists():
        print(f"training set: {zip_path.parent}  (images/, masks/, shadows/, clouds/, surface/, "
              f"train.nc/val.nc/test.nc, manifest.jsonl, {zip_path.name})")
    print("open the UI with:  make ui")
    if failed:
        print(f"{len(failed)} partition(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
