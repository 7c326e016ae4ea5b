"""Jobs: the per-product chain (one partition per run, in one process) and product discovery."""

import os

import dagster as dg

from cloudgan_assets.partitions import products_partitions
from cloudgan_assets.resources import CopernicusResource, DiscoverySettings

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


@dg.op(description="Search the CDSE catalogue (DiscoverySettings) and add new products as partitions.")
def discover_new_products(context: dg.OpExecutionContext, copernicus: CopernicusResource,
                          discovery: DiscoverySettings) -> list:
    from datetime import datetime, timezone

    query = discovery.query(datetime.now(timezone.utc))
    found = copernicus.search(query, log=context.log)
    existing = set(context.instance.get_dynamic_partitions(products_partitions.name))
    # ProductInfo.key passes validate_product_id: only SL_1_RBT product names become partitions.
    new = [p.key for p in found if p.key not in existing][: discovery.max_products]
    if new:
        context.instance.add_dynamic_partitions(products_partitions.name, new)
    context.log.info(f"found {len(found)} products, added {len(new)} new partitions")
    context.add_output_metadata({"found": len(found), "added": len(new), "keys": ", ".join(new) or "none"})
    return new


@dg.job(description="Discover new SL_1_RBT products on CDSE and add them as products partitions; the "
                    "process_pending_products schedule then processes them.", tags=max_runtime(1800))
def discover_products():
    discover_new_products()
