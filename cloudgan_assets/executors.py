"""Which Dagster executor runs a job's steps, chosen with ``CLOUDGAN_EXECUTOR`` when the code loads.

- ``in_process`` (default): a partition's whole chain in one process (a process per step costs
  about 2 s); partitions fan out as separate runs.
- ``multiprocess``: a process per step on this machine.
- ``celery``: steps go to Celery workers through a broker (``dagster-celery``, the ``.[celery]``
  extra). Broker and result backend: ``$CLOUDGAN_CELERY_BROKER`` (default
  ``redis://localhost:6379/0``). Generator steps carry the tag ``dagster-celery/queue: gpu`` and go
  to the workers started with ``-q gpu``; every other step goes to the default queue ``dagster``.
"""

from __future__ import annotations

import os

import dagster as dg

EXECUTORS = ("in_process", "multiprocess", "celery")
DEFAULT_BROKER = "redis://localhost:6379/0"
BROKER_ENV = "CLOUDGAN_CELERY_BROKER"


def executor_from_env() -> dg.ExecutorDefinition:
    """The executor that ``$CLOUDGAN_EXECUTOR`` names (see the module docstring)."""
    kind = os.environ.get("CLOUDGAN_EXECUTOR", "in_process").strip().lower().replace("-", "_") or "in_process"
    if kind == "in_process":
        return dg.in_process_executor
    if kind == "multiprocess":
        return dg.multiprocess_executor
    if kind == "celery":
        try:
            from dagster_celery import celery_executor
        except ImportError:
            raise RuntimeError("CLOUDGAN_EXECUTOR=celery needs the celery extra: pip install -e '.[celery]'") from None
        # From the environment by name, so a broker password never lands in the job's snapshot.
        broker = {"env": BROKER_ENV} if os.environ.get(BROKER_ENV) else DEFAULT_BROKER
        return celery_executor.configured({"broker": broker, "backend": broker}, name="celery")
    raise RuntimeError(f"CLOUDGAN_EXECUTOR={os.environ['CLOUDGAN_EXECUTOR']!r} is not one of {EXECUTORS}")
