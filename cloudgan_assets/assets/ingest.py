"""The ``products`` asset: a verified copy of the files the pipeline reads, per product."""

import dagster as dg

from cloudgan_assets.guard import guarded
from cloudgan_assets.metadata import stage_metadata
from cloudgan_assets.partitions import products_partitions
from cloudgan_assets.resources import CloudGANStorage, CopernicusResource
from cloudgan_core.stages import products as products_stage


@dg.asset(partitions_def=products_partitions, group_name="ingest", kinds={"python"},
          description="Registers a Sentinel-3 SLSTR L1 RBT product into the store, checking every file the "
                      "pipeline reads against the manifest MD5. Taken from the inbox when it is there, else found "
                      "in the Copernicus Data Space catalogue by name and downloaded.")
@guarded
def products(context: dg.AssetExecutionContext, storage: CloudGANStorage,
             copernicus: CopernicusResource) -> dg.MaterializeResult:
    result = products_stage.build(storage.root_path, context.partition_key, inbox=storage.inbox_path,
                                  fetch=lambda key, dest: copernicus.download(key, dest, log=context.log),
                                  log=context.log.info)
    return dg.MaterializeResult(metadata=stage_metadata(result, context))
