"""Schedules (shipped stopped): discovery by cron, and scheduled backfills of pending products."""

import dagster as dg

from cloudgan_assets.jobs import FINAL_PRODUCT_ASSET, discover_products, process_product
from cloudgan_assets.partitions import products_partitions

MAX_RUNS_PER_TICK = 20
#: Runs in these states are still going to materialize their partition.
ACTIVE_RUN_STATUSES = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING,
                       dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]

discover_daily = dg.ScheduleDefinition(
    name="discover_daily", job=discover_products, cron_schedule="0 5 * * *", default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Daily CDSE search for new products (for users who prefer cron to the discovery sensor).")


def pending_partitions(instance: dg.DagsterInstance) -> list[str]:
    """Products partitions whose chain has not finished (never run, or failed) and is not running now."""
    keys = instance.get_dynamic_partitions(products_partitions.name)
    done = instance.get_materialized_partitions(dg.AssetKey(FINAL_PRODUCT_ASSET))
    running = {r.dagster_run.tags.get("dagster/partition")
               for r in instance.get_run_records(filters=dg.RunsFilter(statuses=ACTIVE_RUN_STATUSES))}
    return [k for k in keys if k not in done and k not in running]


@dg.schedule(job=process_product, cron_schedule="0 2 * * *", default_status=dg.DefaultScheduleStatus.STOPPED,
             description=f"Scheduled backfill: a run for every products partition whose assets are missing or "
                         f"failed, at most {MAX_RUNS_PER_TICK} per tick.")
def process_pending_products(context: dg.ScheduleEvaluationContext):
    pending = pending_partitions(context.instance)
    if not pending:
        return dg.SkipReason("every products partition is materialized")
    tick = context.scheduled_execution_time.isoformat() if context.scheduled_execution_time else "now"
    return [dg.RunRequest(partition_key=k, run_key=f"{k}@{tick}") for k in pending[:MAX_RUNS_PER_TICK]]
