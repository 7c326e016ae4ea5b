"""Dataset assets: the surface pool, the mask-exact composites, the training set and its quality report.

Every asset writes its own files under the storage root (``<root>/<asset>[/<partition>]``) and
returns their paths and figures as materialization metadata; the work is done by the plain stage
functions of :mod:`cloudgan_core.dataset`.
"""

from typing import Optional

import dagster as dg
from pydantic import Field, ValidationInfo, field_validator, model_validator

from cloudgan_assets.guard import guarded
from cloudgan_assets.metadata import figures, preview
from cloudgan_assets.partitions import products_partitions
from cloudgan_assets.resources import CloudGANStorage
from cloudgan_core.atomic import recover_folders
from cloudgan_core.composite import BLENDS
from cloudgan_core.dataset import (DatasetResult, build_quality_report, build_surface_pool, build_training_set,
                                   composite_product, cover_histogram_markdown, quality_table_markdown)
from cloudgan_core.settings import (MAX_COVER_BINS, check_choice, check_count, check_fraction, check_order,
                                    check_positive, check_split_fractions)
from cloudgan_core.tiles import check_tile_size


def _partitions_with(context, storage: CloudGANStorage, asset: str, marker: str) -> list[str]:
    """Product partitions (known to the instance) whose ``<asset>/<key>/<marker>`` exists (after
    restoring an interrupted folder swap), sorted."""
    keys = context.instance.get_dynamic_partitions(products_partitions.name)
    recover_folders(storage.path(asset))
    return sorted(k for k in keys if (storage.path(asset, k) / marker).exists())


def _log_notes(context, result: DatasetResult) -> None:
    for note in result.notes:
        context.log.warning(note)


# --------------------------------------------------------------------------- surface_tiles


class SurfaceTilesConfig(dg.Config):
    extra_surface_dir: Optional[str] = Field(
        None, description="optional folder of cloud-free RGB images (png/jpg/tif, 8 bit); each is cut into "
                          "non-overlapping tiles of the tile size (the ragged remainder is dropped, all-black "
                          "tiles skipped) and added to the pool as product 'user'")
    tile_size: Optional[int] = Field(
        None, description="tile side in pixels; default: that of the sorted tiles (256 when there are none). "
                          "Must match the sorted tiles when both are present.")

    @field_validator("tile_size")
    @classmethod
    def _tile_size(cls, value: Optional[int]) -> Optional[int]:
        return None if value is None else check_tile_size(value)


@dg.asset(group_name="dataset", deps=["sorted_tiles"], kinds={"numpy"},
          description="The pool of cloud-free surface tiles: the clear surface candidates of every materialized "
                      "product (fully valid, daytime, 0 % cloud, no snow/ice), plus optionally a user folder of "
                      "cloud-free images. images.npy + index.csv (source, product, row, col, land_fraction).")
@guarded
def surface_tiles(context: dg.AssetExecutionContext, config: SurfaceTilesConfig,
                  storage: CloudGANStorage) -> dg.MaterializeResult:
    keys = _partitions_with(context, storage, "sorted_tiles", "surface/index.csv")
    result = build_surface_pool({k: storage.path("sorted_tiles", k) for k in keys}, storage.path("surface_tiles"),
                                extra_surface_dir=config.extra_surface_dir, tile_size=config.tile_size)
    _log_notes(context, result)
    md = {**figures(result.figures), "path": dg.MetadataValue.path(str(result.path)),
          "index": dg.MetadataValue.path(str(result.path / "index.csv")),
          "per_product": dg.MetadataValue.json(result.details["per_product"])}
    if result.preview is not None:
        md["preview"] = preview(result.preview, result.caption, 560)
    else:
        md["empty"] = dg.MetadataValue.text("the surface pool is empty")
    return dg.MaterializeResult(metadata=md)


# --------------------------------------------------------------------------- composites


class CompositesConfig(dg.Config):
    blend: str = Field("alpha", description="'alpha': mask-exact opacity blend out = surface*(1-a) + colour*a "
                                            "(a = 0 outside the mask); 'original': the original CloudGAN's 50 % "
                                            "blend + intensity stretch, for comparison only (changes clear pixels; "
                                            "the checks on composites fail on it)")
    min_opacity: float = Field(0.35, description="opacity of the darkest masked cloud pixel (0..1): inside the mask "
                                                 "a = min + (max - min) * (mean RGB / 255) ** gamma")
    max_opacity: float = Field(1.0, description="opacity of a white cloud pixel (0..1)")
    gamma: float = Field(1.0, description="exponent on the cloud brightness (>1: thinner mid-bright cloud)")
    whiten: float = Field(0.5, description="share of white mixed into the cloud colour (0..1)")
    seed: int = Field(0, description="seed of the surface assignment; each partition uses "
                                     "sha256('<seed>:<product>') so products get different surfaces")
    prefer_other_product: bool = Field(True, description="lay a cloud over a surface from another product "
                                                         "when an unused one is left")

    @field_validator("blend")
    @classmethod
    def _blend(cls, value: str) -> str:
        return check_choice("blend", value, BLENDS)

    @field_validator("min_opacity", "max_opacity", "whiten")
    @classmethod
    def _share(cls, value: float, info: ValidationInfo) -> float:
        return check_fraction(info.field_name, value)

    @field_validator("gamma")
    @classmethod
    def _gamma(cls, value: float) -> float:
        return check_positive("gamma", value)

    @model_validator(mode="after")
    def _opacity_order(self) -> "CompositesConfig":
        check_order("min_opacity", self.min_opacity, "max_opacity", self.max_opacity)
        return self


@dg.asset(partitions_def=products_partitions, group_name="dataset", deps=["synthetic_clouds", "surface_tiles"],
          kinds={"numpy"},
          description="Generated clouds laid over surface tiles with a per-pixel opacity; clear pixels stay "
                      "byte-identical to the surface, so the mask is exact. images/masks/clouds/surfaces.npy + "
                      "index.csv (with the surface source) + composites.json.")
@guarded
def composites(context: dg.AssetExecutionContext, config: CompositesConfig,
               storage: CloudGANStorage) -> dg.MaterializeResult:
    key = context.partition_key
    result = composite_product(storage.path("synthetic_clouds", key), storage.path("surface_tiles"),
                               storage.path("composites", key), key=key, blend=config.blend,
                               min_opacity=config.min_opacity, max_opacity=config.max_opacity, gamma=config.gamma,
                               whiten=config.whiten, seed=config.seed,
                               prefer_other_product=config.prefer_other_product)
    md = {**figures(result.figures), "path": dg.MetadataValue.path(str(result.path)),
          "index": dg.MetadataValue.path(str(result.path / "index.csv"))}
    if result.preview is not None:
        md["preview"] = preview(result.preview, result.caption, 480)
    else:
        md["empty"] = dg.MetadataValue.text(f"{key} has no cloud tiles (no generator inputs in its cover range); "
                                            "an empty partition is a valid result")
    return dg.MaterializeResult(metadata=md)


# --------------------------------------------------------------------------- training_set


class TrainingSetConfig(dg.Config):
    max_pairs: Optional[int] = Field(None, description="at most this many pairs (None: no limit)")
    min_cover: float = Field(0.0, description="keep pairs with cloud fraction >= this (0..1)")
    max_cover: float = Field(1.0, description="keep pairs with cloud fraction <= this (0..1)")
    balanced: bool = Field(False, description="take the same number of pairs from every cover bin (with max_pairs: "
                                              "shared as evenly as the bins allow)")
    cover_bins: int = Field(10, description="number of equal-width cover bins over [min_cover, max_cover] for "
                                            "balanced sampling")
    train_fraction: float = Field(0.8, description="share of products in train")
    val_fraction: float = Field(0.1, description="share of products in val")
    test_fraction: float = Field(0.1, description="share of products in test (no product is in two splits)")
    seed: int = Field(0, description="seed of the selection and the split (recorded in the manifest)")

    @field_validator("max_pairs")
    @classmethod
    def _max_pairs(cls, value: Optional[int]) -> Optional[int]:
        return None if value is None else check_count("max_pairs", value, 0)

    @field_validator("cover_bins")
    @classmethod
    def _cover_bins(cls, value: int) -> int:
        return check_count("cover_bins", value, 1, MAX_COVER_BINS)

    @field_validator("min_cover", "max_cover", "train_fraction", "val_fraction", "test_fraction")
    @classmethod
    def _share(cls, value: float, info: ValidationInfo) -> float:
        return check_fraction(info.field_name, value)

    @model_validator(mode="after")
    def _ranges(self) -> "TrainingSetConfig":
        check_order("min_cover", self.min_cover, "max_cover", self.max_cover)
        check_split_fractions(self.train_fraction, self.val_fraction, self.test_fraction)
        return self


@dg.asset(group_name="dataset", deps=["composites"], kinds={"python"},
          description="The export users train on: images/, masks/ (0/255), clouds/, surface/ (one number per pair), "
                      "manifest.jsonl, README.md and training_set.zip, from all composite partitions; split by "
                      "product; deterministic; replaced atomically.")
@guarded
def training_set(context: dg.AssetExecutionContext, config: TrainingSetConfig,
                 storage: CloudGANStorage) -> dg.MaterializeResult:
    keys = _partitions_with(context, storage, "composites", "composites.json")
    result = build_training_set({k: storage.path("composites", k) for k in keys}, storage.path("training_set"),
                                max_pairs=config.max_pairs, min_cover=config.min_cover, max_cover=config.max_cover,
                                balanced=config.balanced, cover_bins=config.cover_bins,
                                train_fraction=config.train_fraction, val_fraction=config.val_fraction,
                                test_fraction=config.test_fraction, seed=config.seed)
    _log_notes(context, result)
    details = result.details
    md = {**figures(result.figures), "path": dg.MetadataValue.path(str(result.path)),
          "zip": dg.MetadataValue.path(str(details["zip_path"])),
          "split_products": dg.MetadataValue.json(details["split_products"]),
          "cover_histogram": dg.MetadataValue.md(cover_histogram_markdown(details["cover_histogram"]))}
    if result.preview is not None:
        md["preview"] = preview(result.preview, result.caption, 480)
    return dg.MaterializeResult(metadata=md, data_version=dg.DataVersion(result.figures["zip_sha256"]))


# --------------------------------------------------------------------------- quality_report


@dg.asset(group_name="dataset", deps=["training_set"], kinds={"python"},
          description="Detector IoU (brightness threshold vs mask) and brightness change inside/outside the mask for "
                      "the training set's alpha composites and for the original 50 % blend on the same inputs, plus "
                      "the cover histogram. report.json + report.png.")
@guarded
def quality_report(context: dg.AssetExecutionContext, storage: CloudGANStorage) -> dg.MaterializeResult:
    result = build_quality_report(storage.path("training_set"), storage.path("quality_report"))
    report = result.details["report"]
    md = {**figures(result.figures), "table": dg.MetadataValue.md(quality_table_markdown(report)),
          "plot": preview(result.preview, result.caption, 720),
          "cover_histogram": dg.MetadataValue.md(cover_histogram_markdown(report["cover_histogram"])),
          "report": dg.MetadataValue.path(str(result.path / "report.json")),
          "report_png": dg.MetadataValue.path(str(result.path / "report.png"))}
    _log_notes(context, result)
    return dg.MaterializeResult(metadata=md)
