"""Sensors: new products in the inbox or on CDSE become partitions and runs."""

from datetime import datetime, timezone

import dagster as dg

from cloudgan_assets.jobs import process_product
from cloudgan_assets.partitions import products_partitions
from cloudgan_assets.resources import CloudGANStorage, CopernicusResource, DiscoverySettings
from cloudgan_core.cdse.discovery import DiscoveryCursor, discover
from cloudgan_core.stages.products import inbox_products

MAX_NEW_PER_TICK = 50


def _add(keys: list[str], prefix: str, storage: CloudGANStorage, cursor: str | None = None) -> dg.SensorResult:
    """Add ``keys`` as partitions with a ``process_product`` run each; the storage root and inbox,
    resolved here to absolute paths, travel in the runs' config (the runs' steps may run elsewhere)."""
    run_config = storage.run_config()
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=k, run_key=f"{prefix}:{k}", run_config=run_config) for k in keys],
        dynamic_partitions_requests=[products_partitions.build_add_request(keys)],
        cursor=cursor,
    )


@dg.sensor(job=process_product, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.STOPPED,
           description="Watches the inbox (userdata/product_store) for .zip/.SEN3 products; adds each new one as a "
                       "products partition and requests a run for it. Never adds a product twice.")
def inbox_sensor(context: dg.SensorEvaluationContext, storage: CloudGANStorage) -> dg.SensorResult:
    known = set(context.instance.get_dynamic_partitions(products_partitions.name))
    new = [k for k in inbox_products(storage.inbox_path) if k not in known][:MAX_NEW_PER_TICK]
    if not new:
        return dg.SensorResult(skip_reason=f"no new products in {storage.inbox_path}")
    context.log.info(f"adding {len(new)} products from {storage.inbox_path}")
    return _add(new, "inbox", storage)


@dg.sensor(job=process_product, minimum_interval_seconds=3600, default_status=dg.DefaultSensorStatus.STOPPED,
           description="Searches the CDSE catalogue (DiscoverySettings) and adds new products as partitions with a "
                       "run each, at most max_products per tick. Its cursor remembers what was added, so a restart "
                       "adds nothing twice.")
def cdse_discovery_sensor(context: dg.SensorEvaluationContext, copernicus: CopernicusResource,
                          discovery: DiscoverySettings, storage: CloudGANStorage) -> dg.SensorResult:
    found = discover(discovery, lambda query: copernicus.search(query, log=context.log),
                     now=datetime.now(timezone.utc), cursor=DiscoveryCursor.from_json(context.cursor),
                     existing_keys=context.instance.get_dynamic_partitions(products_partitions.name))
    cursor = found.plan.cursor.to_json()
    if not found.keys:
        return dg.SensorResult(skip_reason=f"{found.found} products found, none new", cursor=cursor)
    context.log.info(f"adding {len(found.keys)} products from CDSE ({found.plan.deferred} left for later ticks)")
    return _add(found.keys, "cdse", storage, cursor)
