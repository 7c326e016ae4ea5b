"""Asset checks on the composites (per product) and on the training set.

Each check reads the asset's files through its stage's ``read`` (:mod:`cloudgan_core.stages.composites`,
:mod:`cloudgan_core.stages.training_set`) and calls a plain check of :mod:`cloudgan_core.validation`;
unreadable or missing files are a failed check that names them, never an exception. All of them are
blocking: a failing check stops the assets downstream of the checked one in the same run
(composites → training_set → quality_report).
"""

import warnings
from collections.abc import Callable

import dagster as dg
from pydantic import Field, field_validator

from cloudgan_assets.partitions import products_partitions
from cloudgan_assets.resources import CloudGANStorage
from cloudgan_core.cover import CoverFields
from cloudgan_core.errors import CloudGANError
from cloudgan_core.settings import check_count, check_fraction
from cloudgan_core.stages import composites, training_set
from cloudgan_core.validation import (CheckOutcome, check_composites_aligned, check_composites_sane,
                                      check_cover_range, check_inside_mask_changed, check_min_pairs,
                                      check_outside_mask_unchanged, check_training_set_aligned, cover_percent)

# Partitioned asset checks are a Dagster "preview" feature; the warning says nothing a user can act on.
warnings.filterwarnings("ignore", message=".*partitions_def on an AssetCheckSpec.*")


def _result(outcome: CheckOutcome) -> dg.AssetCheckResult:
    md = {k: (dg.MetadataValue.json(v) if isinstance(v, (list, dict)) else v)
          for k, v in outcome.metadata.items() if v is not None}
    return dg.AssetCheckResult(passed=outcome.passed, description=outcome.description, metadata=md)


def _failed(problem: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, description=problem)


def _with_composites(storage: CloudGANStorage, key: str,
                     check: Callable[[composites.CompositesData], CheckOutcome]) -> dg.AssetCheckResult:
    try:
        data = composites.read(storage.root_path, key)
        return _result(check(data))
    except (CloudGANError, OSError, ValueError) as exc:
        return _failed(f"cannot read the composites of {key}: {exc}")


def _with_training_set(storage: CloudGANStorage,
                       check: Callable[[training_set.TrainingSetData], CheckOutcome]) -> dg.AssetCheckResult:
    try:
        data = training_set.read(storage.root_path)
        return _result(check(data))
    except (CloudGANError, OSError, ValueError) as exc:
        return _failed(f"cannot read the training set {training_set.folder(storage.root_path)}: {exc}")


# --------------------------------------------------------------------------- composites


class InsideChangedConfig(dg.Config):
    min_share: float = Field(0.95, description="share of cloudy pixels that must differ from the surface (0..1)")

    @field_validator("min_share")
    @classmethod
    def _share(cls, value: float) -> float:
        return check_fraction("min_share", value)


class CoverRangeConfig(dg.Config, CoverFields):
    """The cover (percent) every composite must have: ``(min_cover, max_cover]``."""

    min_cover: float = Field(10.0, description="a composite's cloud cover must be above this (percent) ...")
    max_cover: float = Field(95.0, description="... and at most this (percent)")


@dg.asset_check(asset="composites", name="aligned", partitions_def=products_partitions, blocking=True,
                description="Images, masks, clouds and surfaces pair up: same count and tile size, one index row each.")
def composites_aligned(context: dg.AssetCheckExecutionContext, storage: CloudGANStorage) -> dg.AssetCheckResult:
    return _with_composites(storage, context.partition_key, lambda d: check_composites_aligned(
        d.images, d.masks, d.clouds, d.surfaces, [r["tile"] for r in d.index]))


@dg.asset_check(asset="composites", name="outside_mask_unchanged", partitions_def=products_partitions, blocking=True,
                description="Every pixel outside cloud ∪ shadow of every composite equals its surface (zero "
                            "differing pixels): the cloud and shadow masks are exact.")
def composites_outside_mask_unchanged(context: dg.AssetCheckExecutionContext,
                                      storage: CloudGANStorage) -> dg.AssetCheckResult:
    return _with_composites(storage, context.partition_key,
                            lambda d: check_outside_mask_unchanged(d.images, d.surfaces, d.masks, d.shadows))


@dg.asset_check(asset="composites", name="inside_mask_changed", partitions_def=products_partitions, blocking=True,
                description="At least min_share of the cloudy pixels differ from the surface (clouds are visible).")
def composites_inside_mask_changed(context: dg.AssetCheckExecutionContext, config: InsideChangedConfig,
                                   storage: CloudGANStorage) -> dg.AssetCheckResult:
    return _with_composites(storage, context.partition_key,
                            lambda d: check_inside_mask_changed(d.images, d.surfaces, d.masks, config.min_share))


@dg.asset_check(asset="composites", name="cloud_fraction_range", partitions_def=products_partitions, blocking=True,
                description="The cloud cover of every mask lies within (min_cover, max_cover] percent.")
def composites_cloud_fraction_range(context: dg.AssetCheckExecutionContext, config: CoverRangeConfig,
                                    storage: CloudGANStorage) -> dg.AssetCheckResult:
    return _with_composites(storage, context.partition_key,
                            lambda d: check_cover_range(cover_percent(d.masks), config.cover))


@dg.asset_check(asset="composites", name="tiles_sane", partitions_def=products_partitions, blocking=True,
                description="No composite, cloud or surface tile is all black or holds NaN (an empty partition, "
                            "a product without cloud tiles, passes).")
def composites_tiles_sane(context: dg.AssetCheckExecutionContext, storage: CloudGANStorage) -> dg.AssetCheckResult:
    return _with_composites(storage, context.partition_key,
                            lambda d: check_composites_sane(d.images, d.clouds, d.surfaces))


# --------------------------------------------------------------------------- training_set


class MinPairsConfig(dg.Config):
    min_pairs: int = Field(10, description="the training set needs at least this many pairs")

    @field_validator("min_pairs")
    @classmethod
    def _count(cls, value: int) -> int:
        return check_count("min_pairs", value, 0)


def _aligned(data: training_set.TrainingSetData) -> CheckOutcome:
    numbers = data.numbers()
    return check_training_set_aligned(numbers, data.stored("images", numbers["images"]),
                                      data.stored("masks", numbers["masks"]))


@dg.asset_check(asset="training_set", name="aligned", blocking=True,
                description="images/ and masks/ hold the same pair numbers with tiles of the same size; shadows/, "
                            "clouds/, surface/ and the manifest list the same numbers too.")
def training_set_aligned(storage: CloudGANStorage) -> dg.AssetCheckResult:
    return _with_training_set(storage, _aligned)


@dg.asset_check(asset="training_set", name="outside_mask_unchanged", blocking=True,
                description="Every pixel of images/N.png outside cloud ∪ shadow (masks/N.png, shadows/N.png) equals "
                            "surface/N.png; masks are 0/255.")
def training_set_outside_mask_unchanged(storage: CloudGANStorage) -> dg.AssetCheckResult:
    return _with_training_set(storage, lambda d: check_outside_mask_unchanged(
        d.arrays("images"), d.arrays("surface"), d.arrays("masks"), d.arrays("shadows")))


@dg.asset_check(asset="training_set", name="min_pairs", blocking=True,
                description="The training set has at least min_pairs pairs.")
def training_set_min_pairs(config: MinPairsConfig, storage: CloudGANStorage) -> dg.AssetCheckResult:
    return _with_training_set(storage, lambda d: check_min_pairs(len(d.manifest), config.min_pairs))


COMPOSITE_CHECKS = [composites_aligned, composites_outside_mask_unchanged, composites_inside_mask_changed,
                    composites_cloud_fraction_range, composites_tiles_sane]
TRAINING_SET_CHECKS = [training_set_aligned, training_set_outside_mask_unchanged, training_set_min_pairs]
DATASET_CHECKS = [*COMPOSITE_CHECKS, *TRAINING_SET_CHECKS]
