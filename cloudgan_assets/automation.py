"""Declarative automation: a new product flows on from ``synthetic_clouds`` to the training set.

The per-product chain (``products`` … ``synthetic_clouds``) is launched by the sensors and the
backfill schedule (one ``process_product`` run per product, in one process). From there, once the
``default_automation_condition_sensor`` is turned on (it ships STOPPED, like the other sensors):

- ``composites`` of a product is requested as soon as its ``synthetic_clouds`` is updated (or the
  partition is new), when ``surface_tiles`` exists and nothing upstream is in progress. A refreshed
  surface pool does not re-request the composites of every product.
- ``surface_tiles`` and ``training_set`` (which span all products) are requested when something
  upstream changed, at most once per refresh window of ``$CLOUDGAN_REFRESH_MINUTES`` minutes
  (default :data:`DEFAULT_REFRESH_MINUTES`): products arriving during a window are taken in by one
  refresh, not one refresh per product. Windows are aligned to the clock (a cron schedule), so the
  minutes must divide an hour, or be whole hours that divide a day. ``quality_report`` follows
  each ``training_set`` (``AutomationCondition.eager()``), in the same run.
- The sensor evaluates the conditions every ``$CLOUDGAN_AUTOMATION_INTERVAL_S`` seconds (default
  :data:`DEFAULT_INTERVAL_S`). Its runs carry the ``dagster/max_runtime`` tag of ``build_training_set``
  (6 h; ``$CLOUDGAN_MAX_RUNTIME_S`` overrides).

Runs requested by the automation sensor carry no run config: their steps resolve the storage root
and inbox themselves (``$CLOUDGAN_STORAGE``, ``$CLOUDGAN_INBOX``), so set those on every machine
that runs steps (docs/deploy.md).
"""

from __future__ import annotations

import os

import dagster as dg

from cloudgan_assets.jobs import max_runtime

#: Length of a refresh window of the cross-product assets, in minutes.
DEFAULT_REFRESH_MINUTES = 60
#: How often the automation sensor evaluates the conditions, in seconds (Dagster's default).
DEFAULT_INTERVAL_S = 30
#: Name of the automation sensor (Dagster's name for the default one).
SENSOR_NAME = "default_automation_condition_sensor"


def _env_int(var: str, default: int) -> int:
    raw = os.environ.get(var, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) == 0:
        raise ValueError(f"{var}={raw!r} is not a positive whole number")
    return int(raw)


def refresh_minutes() -> int:
    """``$CLOUDGAN_REFRESH_MINUTES`` or :data:`DEFAULT_REFRESH_MINUTES`."""
    return _env_int("CLOUDGAN_REFRESH_MINUTES", DEFAULT_REFRESH_MINUTES)


def refresh_cron(minutes: int) -> str:
    """The cron schedule whose ticks start the refresh windows of ``minutes`` minutes.

    Raises ``ValueError`` unless ``minutes`` divides 60, or is a whole number of hours that divides 24.
    """
    if minutes > 0 and 60 % minutes == 0:
        return "0 * * * *" if minutes == 60 else f"*/{minutes} * * * *"
    hours, rest = divmod(minutes, 60)
    if rest == 0 and hours > 0 and 24 % hours == 0:
        return "0 0 * * *" if hours == 24 else f"0 */{hours} * * *"
    raise ValueError(f"CLOUDGAN_REFRESH_MINUTES={minutes}: a refresh window must divide an hour (1, 2, 3, 4, 5, 6, "
                     "10, 12, 15, 20, 30 or 60 minutes) or be whole hours that divide a day (120, 180, 240, 360, "
                     "480, 720 or 1440 minutes)")


def _idle() -> dg.AutomationCondition:
    """Nothing of the target or upstream of it is running."""
    return ~dg.AutomationCondition.any_deps_in_progress() & ~dg.AutomationCondition.in_progress()


def new_clouds() -> dg.AutomationCondition:
    """For ``composites``: a product's partition is (re)built after its ``synthetic_clouds`` updates
    (or when the partition is new), once ``surface_tiles`` exists. An update of ``surface_tiles``
    alone requests nothing: it would rebuild the composites of every product."""
    return (
        (dg.AutomationCondition.newly_missing()
         | dg.AutomationCondition.any_deps_updated().ignore(dg.AssetSelection.assets("surface_tiles")))
        .since_last_handled()
        & ~dg.AutomationCondition.any_deps_missing()
        & _idle()
    ).with_label("new synthetic clouds")


def periodic_refresh(minutes: int | None = None) -> dg.AutomationCondition:
    """For the assets that span all products: rebuilt when something upstream changed since they were
    last requested or updated, at most once per window of ``minutes`` (default :func:`refresh_minutes`).

    Missing upstream partitions do not block the refresh (a failed product must not hold up the
    training set): the stages take the partitions that are stored.
    """
    minutes = refresh_minutes() if minutes is None else minutes
    window_start = dg.AutomationCondition.cron_tick_passed(refresh_cron(minutes))
    requested_this_window = dg.AutomationCondition.newly_requested().since(window_start)
    return (
        (dg.AutomationCondition.newly_missing() | dg.AutomationCondition.any_deps_updated()).since_last_handled()
        & ~requested_this_window.with_label(f"requested in this {minutes}-minute window")
        & _idle()
    ).with_label(f"refresh at most every {minutes} min")


def automation_sensor() -> dg.AutomationConditionSensorDefinition:
    """The sensor that evaluates the conditions above, shipped STOPPED; every
    ``$CLOUDGAN_AUTOMATION_INTERVAL_S`` seconds (default :data:`DEFAULT_INTERVAL_S`)."""
    return dg.AutomationConditionSensorDefinition(
        SENSOR_NAME, target=dg.AssetSelection.all(), default_status=dg.DefaultSensorStatus.STOPPED,
        minimum_interval_seconds=_env_int("CLOUDGAN_AUTOMATION_INTERVAL_S", DEFAULT_INTERVAL_S),
        run_tags=max_runtime(6 * 3600),  # the longest of the jobs it stands in for (build_training_set)
        description="Declarative automation: composites after a product's synthetic clouds; surface_tiles, "
                    "training_set and quality_report refreshed at most once per CLOUDGAN_REFRESH_MINUTES "
                    f"(default {DEFAULT_REFRESH_MINUTES}).")
