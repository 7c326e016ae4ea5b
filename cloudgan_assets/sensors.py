"""Sensors: new products dropped into the inbox become partitions and runs."""


import dagster as dg

from cloudgan_assets.jobs import process_product
from cloudgan_assets.partitions import products_partitions
from cloudgan_assets.resources import CloudGANStorage
from cloudgan_core.stages import inbox_products

MAX_NEW_PER_TICK = 50


@dg.sensor(job=process_product, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.STOPPED,
           description="Watches the inbox (userdata/product_store) for .zip/.SEN3 products; adds each new one as a "
                       "products partition and requests a run for it. Never adds a product twice.")
def inbox_sensor(context: dg.SensorEvaluationContext, storage: CloudGANStorage) -> dg.SensorResult:
    known = set(context.instance.get_dynamic_partitions(products_partitions.name))
    new = [k for k in inbox_products(storage.inbox_path) if k not in known][:MAX_NEW_PER_TICK]
    if not new:
        return dg.SensorResult(skip_reason=f"no new products in {storage.inbox_path}")
    context.log.info(f"adding {len(new)} products from {storage.inbox_path}")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=k, run_key=f"inbox:{k}") for k in new],
        dynamic_partitions_requests=[products_partitions.build_add_request(new)],
    )
