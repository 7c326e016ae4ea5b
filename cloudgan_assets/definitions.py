"""The one ``Definitions`` of the CloudGAN code location."""

from __future__ import annotations

import os

import dagster as dg

from cloudgan_assets.assets import clouds, dataset, ingest, scenes, tiles
from cloudgan_assets.automation import automation_sensor
from cloudgan_assets.checks import masks_plausible
from cloudgan_assets.dataset_checks import DATASET_CHECKS
from cloudgan_assets.executors import executor_from_env
from cloudgan_assets.jobs import build_training_set, composite_product, discover_products, process_product
from cloudgan_assets.resources import (CloudGANStorage, CopernicusResource, DiscoverySettings, GeneratorModel,
                                       TorchDevice)
from cloudgan_assets.schedules import discover_daily, process_pending_products
from cloudgan_assets.sensors import cdse_discovery_sensor, inbox_sensor


def _copernicus() -> CopernicusResource:
    """Secrets as EnvVar (shown by name, never by value, in the UI) when set; otherwise read at use time."""
    secrets = {field: dg.EnvVar(var) for field, var in
               (("username", "CDSE_USERNAME"), ("password", "CDSE_PASSWORD"), ("totp", "CDSE_TOTP"))
               if os.environ.get(var)}
    return CopernicusResource(**secrets)


defs = dg.Definitions(
    assets=dg.load_assets_from_modules([ingest, scenes, tiles, clouds, dataset]),
    asset_checks=[masks_plausible, *DATASET_CHECKS],
    jobs=[process_product, composite_product, build_training_set, discover_products],
    sensors=[inbox_sensor, cdse_discovery_sensor, automation_sensor()],
    schedules=[discover_daily, process_pending_products],
    resources={"storage": CloudGANStorage(), "copernicus": _copernicus(), "discovery": DiscoverySettings(),
               "torch_device": TorchDevice(), "generator": GeneratorModel()},
    executor=executor_from_env(),
)


def process_product_job() -> dg.JobDefinition:
    """The ``process_product`` job, from a module-level function so that other processes (the
    executors' workers) can rebuild it: ``dg.reconstructable(process_product_job)``."""
    return defs.resolve_job_def("process_product")
