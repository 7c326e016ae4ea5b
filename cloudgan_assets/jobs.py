"""Jobs: the per-product chain (one partition per run, in one process) and product discovery."""

import os
from datetime import datetime, timezone

import dagster as dg

from cloudgan_assets.partitions import products_partitions
from cloudgan_assets.resources import CloudGANStorage, CopernicusResource, DiscoverySettings
from cloudgan_core.cdse.discovery import cursor_file, discover, load_cursor, save_cursor
from cloudgan_core.locks import partition_lock

#: Everything partitioned by product, in pipeline order; the last one marks a finished product.
PRODUCT_ASSET_NAMES = ("products", "masks", "false_color", "tiles", "sorted_tiles", "synthetic_clouds")
FINAL_PRODUCT_ASSET = PRODUCT_ASSET_NAMES[-1]


def max_runtime(default_s: int) -> dict[str, str]:
    """The ``dagster/max_runtime`` tag (seconds): with run monitoring on (deploy/dagster.local.yaml, deploy/dagster.yaml), a run
    still going after this long is terminated and marked failed. ``$CLOUDGAN_MAX_RUNTIME_S`` replaces
    every job's default; 0 means no limit."""
    raw = os.environ.get("CLOUDGAN_MAX_RUNTIME_S", "")
    if raw and not raw.isdigit():
        raise ValueError(f"CLOUDGAN_MAX_RUNTIME_S={raw!r} is not a whole number of seconds")
    return {"dagster/max_runtime": raw or str(default_s)}


process_product = dg.define_asset_job(
    "process_product",
    selection=dg.AssetSelection.assets(*PRODUCT_ASSET_NAMES),
    description="Run the whole per-product chain for one product partition (in one process).",
    tags=max_runtime(2 * 3600),
)

composite_product = dg.define_asset_job(
    "composite_product", selection=dg.AssetSelection.assets("composites"), tags=max_runtime(3600),
    description="Lay one product's synthetic clouds over surface tiles (after surface_tiles).")

build_training_set = dg.define_asset_job(
    "build_training_set", selection=dg.AssetSelection.assets("training_set", "quality_report"),
    tags=max_runtime(6 * 3600),
    description="Export the training set from every composites partition and report its quality.")


@dg.op(description="Search the CDSE catalogue (DiscoverySettings) and add new products as partitions, with the "
                   "discovery sensor's rules; the cursor is kept in <storage>/_discovery/cursor.json.")
def discover_new_products(context: dg.OpExecutionContext, copernicus: CopernicusResource,
                          discovery: DiscoverySettings, storage: CloudGANStorage) -> list:
    path = cursor_file(storage.root_path)
    with partition_lock(storage.root_path, "discover_products", owner=context.run_id):
        found = discover(discovery, lambda query: copernicus.search(query, log=context.log),
                         now=datetime.now(timezone.utc), cursor=load_cursor(path),
                         existing_keys=context.instance.get_dynamic_partitions(products_partitions.name))
        if found.keys:
            context.instance.add_dynamic_partitions(products_partitions.name, found.keys)
        save_cursor(path, found.plan.cursor)
    context.log.info(f"found {found.found} products, added {len(found.keys)} new partitions "
                     f"({found.plan.deferred} left for the next run)")
    context.add_output_metadata({"found": found.found, "added": len(found.keys), "deferred": found.plan.deferred,
                                 "keys": ", ".join(found.keys) or "none"})
    return found.keys


@dg.job(description="Discover new SL_1_RBT products on CDSE and add them as products partitions; the "
                    "process_pending_products schedule then processes them.", tags=max_runtime(1800))
def discover_products():
    discover_new_products()
