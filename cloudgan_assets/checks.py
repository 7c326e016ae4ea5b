"""Asset checks."""


import json
import warnings

import dagster as dg

from cloudgan_assets.partitions import products_partitions
from cloudgan_assets.resources import CloudGANStorage

SUSPICIOUS_CLOUD_FRACTION = 0.9
MIN_VALID_FRACTION = 0.5

# Partitioned asset checks are a Dagster "preview" feature; the warning says nothing a user can act on.
warnings.filterwarnings("ignore", message=".*partitions_def on an AssetCheckSpec.*")


@dg.asset_check(asset="masks", partitions_def=products_partitions,
                description="Warns about scenes whose mask should not be trusted for training: almost all cloud "
                            "(cold sea ice and snow trip the gross-cloud test) or mostly invalid (night, no data).")
def masks_plausible(context: dg.AssetCheckExecutionContext, storage: CloudGANStorage) -> dg.AssetCheckResult:
    key = context.partition_key
    stats = json.loads((storage.path("masks", key) / "masks.json").read_text())
    problems = []
    if stats["cloud_fraction_of_valid"] > SUSPICIOUS_CLOUD_FRACTION:
        problems.append(f"{100 * stats['cloud_fraction_of_valid']:.1f}% of valid pixels flagged cloud")
    if stats["valid_fraction"] < MIN_VALID_FRACTION:
        problems.append(f"only {100 * stats['valid_fraction']:.1f}% of pixels valid for visible imagery")
    if stats["snow_fraction"] > 0.3:
        problems.append(f"{100 * stats['snow_fraction']:.1f}% snow/ice")
    return dg.AssetCheckResult(
        passed=not problems, severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(problems) or "mask looks plausible",
        metadata={"cloud_fraction": stats["cloud_fraction"], "valid_fraction": stats["valid_fraction"],
                  "cloud_fraction_of_valid": stats["cloud_fraction_of_valid"]})
