"""Schedules (shipped stopped): discovery by cron, and scheduled backfills of pending products."""

import os

import dagster as dg

from cloudgan_assets.guard import WORKER_TAG
from cloudgan_assets.jobs import FINAL_PRODUCT_ASSET, discover_products, process_product
from cloudgan_assets.partitions import products_partitions
from cloudgan_assets.resources import CloudGANStorage
from cloudgan_core.locks import process_alive, this_host

MAX_RUNS_PER_TICK = 20
#: A failed partition is retried at most this many times by the schedule (``CLOUDGAN_MAX_RETRIES``);
#: a run launched by hand starts the count again.
DEFAULT_MAX_RETRIES = 3
#: Run tag: which retry of its partition a run is (absent: not a retry).
RETRY_TAG = "cloudgan/retry"
#: Runs in these states are still going to materialize their partition.
ACTIVE_RUN_STATUSES = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING,
                       dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]

@dg.schedule(job=discover_products, cron_schedule="0 5 * * *", default_status=dg.DefaultScheduleStatus.STOPPED,
             description="Daily CDSE search for new products (for users who prefer cron to the discovery sensor).")
def discover_daily(context: dg.ScheduleEvaluationContext, storage: CloudGANStorage) -> dg.RunRequest:
    # the storage root (where the discovery cursor lives), resolved here, travels in the run config
    return dg.RunRequest(run_config=storage.run_config())


def max_retries() -> int:
    """``$CLOUDGAN_MAX_RETRIES`` or :data:`DEFAULT_MAX_RETRIES`."""
    raw = os.environ.get("CLOUDGAN_MAX_RETRIES", "")
    try:
        return max(0, int(raw)) if raw else DEFAULT_MAX_RETRIES
    except ValueError:
        raise ValueError(f"CLOUDGAN_MAX_RETRIES={raw!r} is not a whole number") from None


def gone_worker(instance: dg.DagsterInstance, record: dg.RunRecord) -> str | None:
    """Why a STARTED run is dead, or None while it may still be running.

    Judged only for runs whose ``cloudgan/worker`` tag names this machine: the run is dead when
    neither the process that started it (the pid of its RUN_START event) nor the one that ran its
    latest step (the tag) runs any more. A pid now used by a process that started after the run
    does not count.
    """
    run = record.dagster_run
    host, _, pid = run.tags.get(WORKER_TAG, "").rpartition(":")
    if host != this_host() or not pid.isdigit():
        return None
    starts = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_START)
    pids = {int(pid)} | {e.dagster_event.pid for e in starts if e.dagster_event is not None and e.dagster_event.pid}
    started = record.start_time or record.create_timestamp.timestamp()
    if any(process_alive(p, started_before=started) for p in pids):
        return None
    return (f"the run's worker process (pid {', '.join(map(str, sorted(pids)))} on {host}) is gone: it was killed or "
            "crashed while the run was STARTED. Marked failed by the process_pending_products schedule, which "
            "retries the partition.")


def fail_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Report every STARTED run whose worker is gone (:func:`gone_worker`) as failed; returns their ids."""
    failed = []
    for record in instance.get_run_records(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        reason = gone_worker(instance, record)
        if reason is None:
            continue
        run = instance.get_run_by_id(record.dagster_run.run_id)
        if run is not None and run.status == dg.DagsterRunStatus.STARTED:  # it did not finish meanwhile
            instance.report_run_failed(run, reason)
            failed.append(run.run_id)
    return failed


def pending_partitions(instance: dg.DagsterInstance) -> list[str]:
    """Products partitions whose chain has not finished (never run, or failed) and is not running now."""
    keys = instance.get_dynamic_partitions(products_partitions.name)
    done = instance.get_materialized_partitions(dg.AssetKey(FINAL_PRODUCT_ASSET))
    running = {r.dagster_run.tags.get("dagster/partition")
               for r in instance.get_run_records(filters=dg.RunsFilter(statuses=ACTIVE_RUN_STATUSES))}
    return [k for k in keys if k not in done and k not in running]


def next_attempt(instance: dg.DagsterInstance, key: str) -> int:
    """0 when the last finished ``process_product`` run of ``key`` did not fail (or there is none);
    after a failure, 1 + that run's ``cloudgan/retry`` tag."""
    last = instance.get_run_records(filters=dg.RunsFilter(
        job_name=process_product.name, tags={"dagster/partition": key},
        statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]), limit=1)
    if not last or last[0].dagster_run.status == dg.DagsterRunStatus.SUCCESS:
        return 0
    tag = last[0].dagster_run.tags.get(RETRY_TAG, "0")
    return 1 + (int(tag) if tag.isdigit() else 0)


@dg.schedule(job=process_product, cron_schedule="0 2 * * *", default_status=dg.DefaultScheduleStatus.STOPPED,
             description=f"Scheduled backfill: a run for every products partition whose assets are missing or "
                         f"failed, at most {MAX_RUNS_PER_TICK} per tick. Runs whose worker process is gone (killed) "
                         f"are marked failed first; a failed partition is retried at most CLOUDGAN_MAX_RETRIES "
                         f"(default {DEFAULT_MAX_RETRIES}) times.")
def process_pending_products(context: dg.ScheduleEvaluationContext, storage: CloudGANStorage):
    for run_id in fail_dead_runs(context.instance):
        context.log.warning(f"run {run_id}: worker process gone; marked failed")
    cap = max_retries()
    run_config = storage.run_config()  # absolute storage root and inbox, for steps that run elsewhere
    tick = context.scheduled_execution_time.isoformat() if context.scheduled_execution_time else "now"
    requests, given_up = [], []
    for key in pending_partitions(context.instance):
        if len(requests) >= MAX_RUNS_PER_TICK:
            break
        attempt = next_attempt(context.instance, key)
        if attempt > cap:
            given_up.append(key)
            continue
        requests.append(dg.RunRequest(partition_key=key, run_key=f"{key}@{tick}", run_config=run_config,
                                      tags={RETRY_TAG: str(attempt)} if attempt else {}))
    if given_up:
        more = " ..." if len(given_up) > 10 else ""
        context.log.warning(f"{len(given_up)} partition(s) failed {cap + 1} times and are no longer retried (launch a "
                            f"run by hand to try again): {', '.join(given_up[:10])}{more}")
    if not requests:
        return dg.SkipReason(f"no partition to run: every products partition is materialized or running"
                             f"{f', or failed {cap + 1} times ({len(given_up)})' if given_up else ''}")
    return requests
