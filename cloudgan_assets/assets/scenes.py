"""Scene assets: the cloud mask with per-pixel flags, and the false-colour image."""

import dagster as dg

from cloudgan_assets.guard import guarded
from cloudgan_assets.metadata import stage_metadata
from cloudgan_assets.partitions import products_partitions
from cloudgan_assets.resources import CloudGANStorage
from cloudgan_core.stages import false_color as false_color_stage
from cloudgan_core.stages import masks as masks_stage


class MasksConfig(dg.Config, masks_stage.MasksConfig):
    """Which cloud test makes the mask, and up to which solar zenith a pixel is valid."""


class FalseColorConfig(dg.Config, false_color_stage.FalseColorConfig):
    """Whether the radiance adjustment factors are applied."""


@dg.asset(partitions_def=products_partitions, group_name="scenes", deps=["products"], kinds={"numpy"},
          description="Cloud mask (confidence_an & summary_cloud, bit found by name) and per-pixel flags: "
                      "no-data, day, twilight, land/ocean, snow, sun glint, valid.")
@guarded
def masks(context: dg.AssetExecutionContext, config: MasksConfig, storage: CloudGANStorage) -> dg.MaterializeResult:
    result = masks_stage.build(storage.root_path, context.partition_key, config)
    return dg.MaterializeResult(metadata=stage_metadata(result, context))


@dg.asset(partitions_def=products_partitions, group_name="scenes", deps=["products"], kinds={"numpy"},
          description="All nine bands on the 500 m grid (bands.npy: S1-S6 TOA reflectance R = pi L / (E0 cos "
                      "SZA), S7-S9 brightness temperature in K from the 1 km grid), the valid pixels and the "
                      "false-colour image R=(S3+S5)/2, G=S3, B=(S3+S1)/2.")
@guarded
def false_color(context: dg.AssetExecutionContext, config: FalseColorConfig,
                storage: CloudGANStorage) -> dg.MaterializeResult:
    result = false_color_stage.build(storage.root_path, context.partition_key, config)
    return dg.MaterializeResult(metadata=stage_metadata(result, context))
