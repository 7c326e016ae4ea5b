"""Jobs: the per-product chain (one partition per run, in one process) and product discovery."""

import dagster as dg

from cloudgan_assets.partitions import products_partitions
from cloudgan_assets.resources import CopernicusResource, DiscoverySettings

#: Everything partitioned by product, in pipeline order; the last one marks a finished product.
PRODUCT_ASSET_NAMES = ("products", "masks", "false_color", "tiles", "sorted_tiles", "synthetic_clouds")
FINAL_PRODUCT_ASSET = PRODUCT_ASSET_NAMES[-1]

process_product = dg.define_asset_job(
    "process_product",
    selection=dg.AssetSelection.assets(*PRODUCT_ASSET_NAMES),
    description="Run the whole per-product chain for one product partition (in one process).",
)

composite_product = dg.define_asset_job(
    "composite_product", selection=dg.AssetSelection.assets("composites"),
    description="Lay one product's synthetic clouds over surface tiles (after surface_tiles).")

build_training_set = dg.define_asset_job(
    "build_training_set", selection=dg.AssetSelection.assets("training_set", "quality_report"),
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
                    "process_pending_products schedule then processes them.")
def discover_products():
    discover_new_products()
