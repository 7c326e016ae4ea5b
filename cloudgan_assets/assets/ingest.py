"""The ``products`` asset: a verified copy of the files the pipeline reads, per product."""

import shutil

import dagster as dg

from cloudgan_assets.guard import guarded
from cloudgan_assets.metadata import figures
from cloudgan_assets.partitions import products_partitions
from cloudgan_assets.resources import CloudGANStorage, CopernicusResource
from cloudgan_core.cdse import CdseError
from cloudgan_core.errors import ProductError
from cloudgan_core.stages import find_in_inbox, register_product


@dg.asset(partitions_def=products_partitions, group_name="ingest", kinds={"python"},
          description="Registers a Sentinel-3 SLSTR L1 RBT product into the store, checking every file the "
                      "pipeline reads against the manifest MD5. Taken from the inbox when it is there, else found "
                      "in the Copernicus Data Space catalogue by name and downloaded.")
@guarded
def products(context: dg.AssetExecutionContext, storage: CloudGANStorage,
             copernicus: CopernicusResource) -> dg.MaterializeResult:
    key = context.partition_key
    source = find_in_inbox(storage.inbox_path, key)
    downloaded = source is None
    if downloaded:
        context.log.info(f"{key} is not in the inbox {storage.inbox_path}; downloading it from CDSE")
        try:
            source = copernicus.download(key, storage.path("downloads"), log=context.log)
        except CdseError as exc:
            raise ProductError(key, f"not found in the inbox {storage.inbox_path} (as {key}.zip or {key}.SEN3), "
                                    f"and the CDSE download failed: {exc}") from exc
    context.log.info(f"registering {source}")
    result = register_product(source, storage.path("products", key), expected_id=key)
    if downloaded and source.is_dir():  # the store now holds the verified files: drop the staging copy
        shutil.rmtree(source, ignore_errors=True)
    elif downloaded:
        source.unlink(missing_ok=True)
    md = {**figures(result.figures), "path": dg.MetadataValue.path(str(result.path)),
          "origin": dg.MetadataValue.text("CDSE download" if downloaded else "inbox")}
    return dg.MaterializeResult(metadata=md)
