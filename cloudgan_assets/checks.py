"""Asset checks on the per-product assets (the dataset's are in ``dataset_checks``)."""

import warnings

import dagster as dg

from cloudgan_assets.partitions import products_partitions
from cloudgan_assets.resources import CloudGANStorage
from cloudgan_core.stages import masks as masks_stage

# Partitioned asset checks are a Dagster "preview" feature; the warning says nothing a user can act on.
warnings.filterwarnings("ignore", message=".*partitions_def on an AssetCheckSpec.*")


@dg.asset_check(asset="masks", partitions_def=products_partitions,
                description="Warns about scenes whose mask should not be trusted for training: almost all cloud "
                            "(cold sea ice and snow trip the gross-cloud test), mostly invalid (night, no data) or "
                            "mostly snow/ice.")
def masks_plausible(context: dg.AssetCheckExecutionContext, storage: CloudGANStorage) -> dg.AssetCheckResult:
    outcome = masks_stage.plausibility(masks_stage.read(storage.root_path, context.partition_key).summary)
    return dg.AssetCheckResult(
        passed=outcome.passed, severity=dg.AssetCheckSeverity.WARN, description=outcome.description,
        metadata={"cloud_fraction": outcome.cloud_fraction, "valid_fraction": outcome.valid_fraction,
                  "cloud_fraction_of_valid": outcome.cloud_fraction_of_valid})
