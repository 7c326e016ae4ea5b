"""Jobs: the per-product chain, run for one partition at a time."""

import dagster as dg


#: Everything partitioned by product (products → ... → composites).
PRODUCT_ASSETS = dg.AssetSelection.assets("products", "masks", "false_color", "tiles", "sorted_tiles")

process_product = dg.define_asset_job(
    "process_product",
    selection=PRODUCT_ASSETS,
    description="Run the whole per-product chain for one product partition (in one process).",
)
