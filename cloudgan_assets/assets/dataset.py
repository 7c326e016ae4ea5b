"""Dataset assets: the surface pool, the mask-exact composites, the training set and its quality report.

Each asset calls its stage of :mod:`cloudgan_core.stages` (``surface_tiles``, ``composites``,
``training_set``, ``quality_report``), which writes ``<root>/<asset>[/<partition>]`` and returns
the figures and preview shown as metadata.
"""

import dagster as dg

from cloudgan_assets.automation import new_clouds, periodic_refresh
from cloudgan_assets.guard import guarded
from cloudgan_assets.metadata import stage_metadata
from cloudgan_assets.partitions import products_partitions
from cloudgan_assets.resources import CloudGANStorage
from cloudgan_core.stages import composites as composites_stage
from cloudgan_core.stages import quality_report as quality_stage
from cloudgan_core.stages import surface_tiles as surface_stage
from cloudgan_core.stages import training_set as training_stage
from cloudgan_core.stages.base import stored_partitions


def _stored(context: dg.AssetExecutionContext, storage: CloudGANStorage, asset: str) -> list[str]:
    """The product partitions known to the instance that have ``asset`` stored."""
    keys = context.instance.get_dynamic_partitions(products_partitions.name)
    return stored_partitions(storage.root_path, asset, keys)


class SurfaceTilesConfig(dg.Config, surface_stage.SurfaceTilesConfig):
    """Where the pool's tiles come from besides the products, their size, and the temperature and
    angles given to user images."""


@dg.asset(group_name="dataset", deps=["sorted_tiles"], kinds={"numpy"},
          automation_condition=periodic_refresh(),
          description="The pool of cloud-free surface tiles: the clear surface candidates of every materialized "
                      "product (fully valid, daytime, 0 % cloud; snow and ice included), plus optionally a user "
                      "folder of cloud-free RGB images (bands approximated). images.npy, bands.npy, flags.npy + "
                      "index.csv (source, product, row, col, land/snow fraction, angles, bands_source).")
@guarded
def surface_tiles(context: dg.AssetExecutionContext, config: SurfaceTilesConfig,
                  storage: CloudGANStorage) -> dg.MaterializeResult:
    result = surface_stage.build(storage.root_path, config, products=_stored(context, storage, "sorted_tiles"))
    return dg.MaterializeResult(metadata=stage_metadata(result, context))


class CompositesConfig(dg.Config, composites_stage.CompositesConfig):
    """How the clouds are laid over the surfaces."""


@dg.asset(partitions_def=products_partitions, group_name="dataset", deps=["synthetic_clouds", "surface_tiles"],
          kinds={"numpy"},
          automation_condition=new_clouds(),
          description="Clouds rendered in all nine bands over surface tiles with the surface's sun and view angles, "
                      "with their shadows; outside cloud and shadow every pixel stays byte-identical to the surface, "
                      "so the masks are exact. images/masks/shadows/clouds/surfaces.npy, bands/surface_bands.npy + "
                      "index.csv (surface source, angles) + composites.json.")
@guarded
def composites(context: dg.AssetExecutionContext, config: CompositesConfig,
               storage: CloudGANStorage) -> dg.MaterializeResult:
    result = composites_stage.build(storage.root_path, context.partition_key, config)
    return dg.MaterializeResult(metadata=stage_metadata(result, context))


class TrainingSetConfig(dg.Config, training_stage.TrainingSetConfig):
    """Which composites go into the training set (cover in percent) and how products are split."""


@dg.asset(group_name="dataset", deps=["composites"], kinds={"python"},
          automation_condition=periodic_refresh(),
          description="The export users train on: images/, masks/, shadows/ (0/255), clouds/, surface/ (one number "
                      "per pair), train/val/test.nc (nine bands, masks; xarray), manifest.jsonl, README.md and "
                      "training_set.zip, from all composite partitions; split by product; deterministic; replaced "
                      "atomically.")
@guarded
def training_set(context: dg.AssetExecutionContext, config: TrainingSetConfig,
                 storage: CloudGANStorage) -> dg.MaterializeResult:
    result = training_stage.build(storage.root_path, config, products=_stored(context, storage, "composites"))
    return dg.MaterializeResult(metadata=stage_metadata(result, context),
                                data_version=dg.DataVersion(result.zip_sha256))


@dg.asset(group_name="dataset", deps=["training_set"], kinds={"python"},
          automation_condition=dg.AutomationCondition.eager(),
          description="Realism figures (texture, checkerboard, edge opacity, bright-and-cold, S5/S3 over cloud vs "
                      "snow), detector IoU and brightness change for the training set's composites and for the "
                      "original 50 % blend on the same inputs, plus the cover histogram. report.json + report.png.")
@guarded
def quality_report(context: dg.AssetExecutionContext, storage: CloudGANStorage) -> dg.MaterializeResult:
    result = quality_stage.build(storage.root_path)
    return dg.MaterializeResult(metadata=stage_metadata(result, context))
