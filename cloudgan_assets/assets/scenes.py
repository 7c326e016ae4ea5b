"""Scene assets: the cloud mask with per-pixel flags, and the false-colour image."""


import dagster as dg
import numpy as np
from pydantic import Field, field_validator

from cloudgan_assets.guard import guarded
from cloudgan_assets.metadata import figures, preview
from cloudgan_assets.partitions import products_partitions
from cloudgan_assets.resources import CloudGANStorage
from cloudgan_core.settings import check_choice
from cloudgan_core.slstr.flags import CLOUD_SOURCES, check_max_solar_zenith
from cloudgan_core.stages import compute_false_color, compute_masks, stored_product


class MasksConfig(dg.Config):
    source: str = Field("summary_cloud", description="summary_cloud (confidence_an bit) or bayes (bayes_an; falls "
                                                     "back to summary_cloud when not computed)")
    max_solar_zenith: float = Field(85.0, description="pixels with a larger solar zenith (deg, within (0, 90]) are "
                                                      "invalid")

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        return check_choice("source", value, CLOUD_SOURCES)

    @field_validator("max_solar_zenith")
    @classmethod
    def _max_solar_zenith(cls, value: float) -> float:
        return check_max_solar_zenith(value)


class FalseColorConfig(dg.Config):
    adjustment_factors: bool = Field(True, description="apply the S3.PN-SLSTR-L1.08 radiance adjustment factors")
    save_reflectance: bool = Field(True, description="also keep float32 reflectances (reflectance.npy)")


@dg.asset(partitions_def=products_partitions, group_name="scenes", deps=["products"], kinds={"numpy"},
          description="Cloud mask (confidence_an & summary_cloud, bit found by name) and per-pixel flags: "
                      "no-data, day, twilight, land/ocean, snow, sun glint, valid.")
@guarded
def masks(context: dg.AssetExecutionContext, config: MasksConfig, storage: CloudGANStorage) -> dg.MaterializeResult:
    key = context.partition_key
    result = compute_masks(stored_product(storage.path("products", key)), storage.path("masks", key),
                           source=config.source, max_solar_zenith=config.max_solar_zenith)
    for note in result.notes:
        context.log.warning(note)
    md = {**figures(result.figures), "path": dg.MetadataValue.path(str(result.path)),
          "preview": preview(result.preview, "cloud mask (white = cloud)")}
    if result.notes:
        md["notes"] = dg.MetadataValue.text("; ".join(result.notes))
    return dg.MaterializeResult(metadata=md)


@dg.asset(partitions_def=products_partitions, group_name="scenes", deps=["products"], kinds={"numpy"},
          description="TOA reflectance R = pi L / (E0 cos SZA) of S1/S3/S5 and the false-colour image "
                      "R=(S3+S5)/2, G=S3, B=(S3+S1)/2.")
@guarded
def false_color(context: dg.AssetExecutionContext, config: FalseColorConfig,
                storage: CloudGANStorage) -> dg.MaterializeResult:
    key = context.partition_key
    result = compute_false_color(stored_product(storage.path("products", key)), storage.path("false_color", key),
                                 adjust=config.adjustment_factors, save_reflectance=config.save_reflectance)
    return dg.MaterializeResult(metadata={**figures(result.figures), "path": dg.MetadataValue.path(str(result.path)),
                                          "preview": preview(np.asarray(result.preview), "false colour")})
