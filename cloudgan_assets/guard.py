"""What every asset step does around its work (the ``@guarded`` decorator under ``@dg.asset``).

- Checks the partition key with the one product-name validator before anything else (a key
  added in the UI is otherwise unchecked).
- Takes the write lock of its partition (:func:`cloudgan_core.locks.partition_lock`, owner = the
  run id, so the steps of one run share it): a step of a second run of the same partition fails
  at once with "another run is writing <partition> ...".
- Records the machine and pid of the worker in the run's ``cloudgan/worker`` tag, so the backfill
  schedule can tell a run whose worker was killed from one still running.
- Names the asset and partition in a full-disk error.
- Adds where the step ran to its materialization metadata: ``host``, ``pid`` and, on a Celery
  worker, ``worker`` (the Celery node name, e.g. ``gpu@box``), so an operator sees where it ran.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import dagster as dg

from cloudgan_core.atomic import DiskFullError
from cloudgan_core.locks import partition_lock, this_host
from cloudgan_core.slstr.names import validate_product_id

#: Run tag ``<host>:<pid>`` of the process that runs (ran) the run's latest step.
WORKER_TAG = "cloudgan/worker"


def worker_tag_value() -> str:
    """This process's ``cloudgan/worker`` tag value."""
    return f"{this_host()}:{os.getpid()}"


def celery_worker_name() -> str | None:
    """The Celery node name (``gpu@box``) when this code runs inside a Celery task, else None."""
    try:
        from celery import current_task
    except ImportError:  # the celery extra is not installed
        return None
    request = getattr(current_task, "request", None) if current_task else None
    return getattr(request, "hostname", None) or None


def where_it_ran() -> dict[str, object]:
    """``host``, ``pid`` (and ``worker`` on Celery) of this process, for step metadata."""
    place: dict[str, object] = {"host": this_host(), "pid": os.getpid()}
    worker = celery_worker_name()
    if worker:
        place["worker"] = worker
    return place


def guarded(fn: Callable[..., dg.MaterializeResult]) -> Callable[..., dg.MaterializeResult]:
    """Wrap an asset function (which has a ``storage`` resource) as described in the module docstring."""

    @functools.wraps(fn)
    def step(context: dg.AssetExecutionContext, *args, **kwargs) -> dg.MaterializeResult:
        asset = context.asset_key.to_user_string()
        key = validate_product_id(context.partition_key, "products partition key") if context.has_partition_key else asset
        worker = worker_tag_value()
        if context.run.tags.get(WORKER_TAG) != worker:
            context.instance.add_run_tags(context.run.run_id, {WORKER_TAG: worker})
        try:
            with partition_lock(kwargs["storage"].root_path, key, owner=context.run.run_id):
                result = fn(context, *args, **kwargs)
            return result._replace(metadata={**(result.metadata or {}), **where_it_ran()})
        except DiskFullError as exc:
            raise exc.about(f"{asset} for {key}" if key != asset else asset) from exc

    return step
