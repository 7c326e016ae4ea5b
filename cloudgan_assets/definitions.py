"""The one ``Definitions`` of the CloudGAN code location."""

from __future__ import annotations

import os

import dagster as dg

from cloudgan_assets.assets import ingest, scenes, tiles
from cloudgan_assets.checks import masks_plausible
from cloudgan_assets.jobs import process_product
from cloudgan_assets.resources import CloudGANStorage
from cloudgan_assets.sensors import inbox_sensor


def _executor() -> dg.ExecutorDefinition:
    """In-process by default: a partition's chain runs in one process (a process per step costs ~2 s).
    Set ``CLOUDGAN_EXECUTOR=multiprocess`` for a process per step; partitions fan out as separate runs."""
    return dg.multiprocess_executor if os.environ.get("CLOUDGAN_EXECUTOR") == "multiprocess" else dg.in_process_executor


defs = dg.Definitions(
    assets=dg.load_assets_from_modules([ingest, scenes, tiles]),
    asset_checks=[masks_plausible],
    jobs=[process_product],
    sensors=[inbox_sensor],
    resources={"storage": CloudGANStorage()},
    executor=_executor(),
)
