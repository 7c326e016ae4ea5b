"""The ``products`` asset: a verified copy of the files the pipeline reads, per product."""

import shutil

import dagster as dg

from cloudgan_assets.guard import guarded
from cloudgan_assets.metadata import figures
from cloudgan_assets.partitions import products_partitions
from cloudgan_assets.resources import CloudGANStorage, CopernicusResource
from cloudgan_core.cdse import CdseError
from cloudgan_core.errors import ProductError
from cloudgan_core.slstr.names import validate_product_id
from cloudgan_core.stages import find_in_inbox, register_product
from cloudgan_core.storage import UnsafePathError, inside


@dg.asset(partitions_def=products_partitions, group_name="ingest", kinds={"python"},
          description="Registers a Sentinel-3 SLSTR L1 RBT product into the store, checking every file the "
                      "pipeline reads against the manifest MD5. Taken from the inbox when it is there, else found "
                      "in the Copernicus Data Space catalogue by name and downloaded.")
@guarded
def products(context: dg.AssetExecutionContext, storage: CloudGANStorage,
             copernicus: CopernicusResource) -> dg.MaterializeResult:
    # A key typed into the UI is checked before it names any file or reaches CDSE.
    key = validate_product_id(context.partition_key, "products partition key")
    source = find_in_inbox(storage.inbox_path, key)
    downloaded = source is None
    if downloaded:
        downloads = storage.path("downloads")
        context.log.info(f"{key} is not in the inbox {storage.inbox_path}; downloading it from CDSE")
        try:
            source = copernicus.download(key, downloads, log=context.log)
        except CdseError as exc:
            raise ProductError(key, f"not found in the inbox {storage.inbox_path} (as {key}.zip or {key}.SEN3), "
                                    f"and the CDSE download failed: {exc}") from exc
        # Only ever remove <key>.SEN3 or <key>.zip inside downloads/.
        if source.name not in (f"{key}.SEN3", f"{key}.zip") or source != inside(downloads, source.name):
            raise UnsafePathError(f"the download of {key} ended at {source}, not {downloads}/{key}.SEN3 or .zip")
    context.log.info(f"registering {source}")
    result = register_product(source, storage.path("products", key), expected_id=key)
    if downloaded and source.is_dir():  # the store now holds the verified files: drop the staging copy
        shutil.rmtree(source, ignore_errors=True)
    elif downloaded:
        source.unlink(missing_ok=True)
    md = {**figures(result.figures), "path": dg.MetadataValue.path(str(result.path)),
          "origin": dg.MetadataValue.text("CDSE download" if downloaded else "inbox")}
    return dg.MaterializeResult(metadata=md)
