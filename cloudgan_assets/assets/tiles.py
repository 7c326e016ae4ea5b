"""Tile assets: the scene cut into tiles, and the tiles sorted into cloud-cover bins."""

import dagster as dg

from cloudgan_assets.guard import guarded
from cloudgan_assets.metadata import stage_metadata
from cloudgan_assets.partitions import products_partitions
from cloudgan_assets.resources import CloudGANStorage
from cloudgan_core.stages import sorted_tiles as sorted_tiles_stage
from cloudgan_core.stages import tiles as tiles_stage


class TilesConfig(dg.Config, tiles_stage.TilesConfig):
    """The tile side in pixels."""


class SortedTilesConfig(dg.Config, sorted_tiles_stage.SortedTilesConfig):
    """The cover bins, and the cover range (percent) and valid share of the generator's inputs."""


@dg.asset(partitions_def=products_partitions, group_name="tiles", deps=["masks", "false_color"], kinds={"numpy"},
          description="Square tiles of the false-colour image, the mask, the nine bands and the pixel flags, with "
                      "per-tile cloud/valid/day/land/snow fractions and mean sun and view angles in index.csv.")
@guarded
def tiles(context: dg.AssetExecutionContext, config: TilesConfig, storage: CloudGANStorage) -> dg.MaterializeResult:
    result = tiles_stage.build(storage.root_path, context.partition_key, config)
    return dg.MaterializeResult(metadata=stage_metadata(result, context))


@dg.asset(partitions_def=products_partitions, group_name="tiles", deps=["tiles"], kinds={"numpy"},
          description="Tiles sorted into cover bins (default 0/10/95/100 %): clear surface candidates (snow "
                      "and ice included) and the generator's mask inputs, each group with its bands and flags.")
@guarded
def sorted_tiles(context: dg.AssetExecutionContext, config: SortedTilesConfig,
                 storage: CloudGANStorage) -> dg.MaterializeResult:
    result = sorted_tiles_stage.build(storage.root_path, context.partition_key, config)
    return dg.MaterializeResult(metadata=stage_metadata(result, context))
