"""The ``products`` asset: a verified copy of the files the pipeline reads, per product."""


import dagster as dg

from cloudgan_assets.metadata import figures
from cloudgan_assets.partitions import products_partitions
from cloudgan_assets.resources import CloudGANStorage
from cloudgan_core.errors import ProductError
from cloudgan_core.stages import find_in_inbox, register_product


@dg.asset(partitions_def=products_partitions, group_name="ingest", kinds={"python"},
          description="Registers a Sentinel-3 SLSTR L1 RBT product from the inbox into the store, "
                      "checking every file the pipeline reads against the manifest MD5.")
def products(context: dg.AssetExecutionContext, storage: CloudGANStorage) -> dg.MaterializeResult:
    key = context.partition_key
    source = find_in_inbox(storage.inbox_path, key)
    if source is None:
        raise ProductError(key, f"not found in the inbox {storage.inbox_path} (expected {key}.zip or {key}.SEN3)")
    context.log.info(f"registering {source}")
    result = register_product(source, storage.path("products", key), expected_id=key)
    return dg.MaterializeResult(metadata={**figures(result.figures), "path": dg.MetadataValue.path(str(result.path))})
