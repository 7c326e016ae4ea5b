"""Asset checks on the composites (per product) and on the training set.

Each check reads the files the asset wrote with a loader of :mod:`cloudgan_core.dataset` and calls
a plain check of :mod:`cloudgan_core.validation` (or of :mod:`cloudgan_core.dataset`, for the
checks specific to composites and training sets); unreadable or missing files are a failed check that names them,
never an exception. All of them are blocking: a failing check stops the assets downstream of the
checked one in the same run (composites → training_set → quality_report).
"""

import warnings

import dagster as dg
from pydantic import Field

from cloudgan_assets.partitions import products_partitions
from cloudgan_assets.resources import CloudGANStorage
from cloudgan_core.dataset import load_composites, load_training_pngs
from cloudgan_core.errors import CloudGANError
from cloudgan_core.export import read_manifest, read_training_set, read_training_sources
from cloudgan_core.validation import (CheckOutcome, check_cloud_fraction_range, check_inside_mask_changed,
                                      check_min_pairs, check_outside_mask_unchanged,
                                      check_composites_aligned, check_composites_sane, check_training_set_aligned,
                                      cloud_fractions)

# Partitioned asset checks are a Dagster "preview" feature; the warning says nothing a user can act on.
warnings.filterwarnings("ignore", message=".*partitions_def on an AssetCheckSpec.*")


def _result(outcome: CheckOutcome) -> dg.AssetCheckResult:
    md = {k: (dg.MetadataValue.json(v) if isinstance(v, (list, dict)) else v)
          for k, v in outcome.metadata.items() if v is not None}
    return dg.AssetCheckResult(passed=outcome.passed, description=outcome.description, metadata=md)


def _failed(problem: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, description=problem)


def _with_composites(storage: CloudGANStorage, key: str, fn) -> dg.AssetCheckResult:
    try:
        data = load_composites(storage.path("composites", key))
    except (CloudGANError, OSError, ValueError) as exc:
        return _failed(f"cannot read the composites of {key}: {exc}")
    return _result(fn(data))


# --------------------------------------------------------------------------- composites


class InsideChangedConfig(dg.Config):
    min_share: float = Field(0.95, description="share of cloudy pixels that must differ from the surface")


class CoverRangeConfig(dg.Config):
    min_cover: float = Field(0.10, description="lowest cloud fraction (0..1) a composite may have")
    max_cover: float = Field(0.95, description="highest cloud fraction (0..1) a composite may have")


@dg.asset_check(asset="composites", name="aligned", partitions_def=products_partitions, blocking=True,
                description="Images, masks, clouds and surfaces pair up: same count and tile size, one index row each.")
def composites_aligned(context: dg.AssetCheckExecutionContext, storage: CloudGANStorage) -> dg.AssetCheckResult:
    return _with_composites(storage, context.partition_key, check_composites_aligned)


@dg.asset_check(asset="composites", name="outside_mask_unchanged", partitions_def=products_partitions, blocking=True,
                description="Every clear pixel of every composite equals its surface (zero differing pixels): "
                            "the mask is exact.")
def composites_outside_mask_unchanged(context: dg.AssetCheckExecutionContext,
                                      storage: CloudGANStorage) -> dg.AssetCheckResult:
    return _with_composites(storage, context.partition_key,
                            lambda d: check_outside_mask_unchanged(d["images"], d["surfaces"], d["masks"]))


@dg.asset_check(asset="composites", name="inside_mask_changed", partitions_def=products_partitions, blocking=True,
                description="At least min_share of the cloudy pixels differ from the surface (clouds are visible).")
def composites_inside_mask_changed(context: dg.AssetCheckExecutionContext, config: InsideChangedConfig,
                                   storage: CloudGANStorage) -> dg.AssetCheckResult:
    return _with_composites(storage, context.partition_key,
                            lambda d: check_inside_mask_changed(d["images"], d["surfaces"], d["masks"],
                                                                config.min_share))


@dg.asset_check(asset="composites", name="cloud_fraction_range", partitions_def=products_partitions, blocking=True,
                description="The cloud fraction of every mask lies within [min_cover, max_cover].")
def composites_cloud_fraction_range(context: dg.AssetCheckExecutionContext, config: CoverRangeConfig,
                                    storage: CloudGANStorage) -> dg.AssetCheckResult:
    return _with_composites(storage, context.partition_key,
                            lambda d: check_cloud_fraction_range(cloud_fractions(d["masks"]), config.min_cover,
                                                                 config.max_cover))


@dg.asset_check(asset="composites", name="tiles_sane", partitions_def=products_partitions, blocking=True,
                description="No composite, cloud or surface tile is all black or holds NaN (an empty partition, "
                            "a product without cloud tiles, passes).")
def composites_tiles_sane(context: dg.AssetCheckExecutionContext, storage: CloudGANStorage) -> dg.AssetCheckResult:
    return _with_composites(storage, context.partition_key, check_composites_sane)


# --------------------------------------------------------------------------- training_set


class MinPairsConfig(dg.Config):
    min_pairs: int = Field(10, description="the training set needs at least this many pairs")


@dg.asset_check(asset="training_set", name="aligned", blocking=True,
                description="images/ and masks/ hold the same pair numbers with tiles of the same size; clouds/, "
                            "surface/ and the manifest list the same numbers too.")
def training_set_aligned(storage: CloudGANStorage) -> dg.AssetCheckResult:
    dest = storage.path("training_set")
    try:
        numbers, images, masks = load_training_pngs(dest)
    except (CloudGANError, OSError) as exc:
        return _failed(f"cannot read the training set {dest}: {exc}")
    return _result(check_training_set_aligned(numbers, images, masks))


@dg.asset_check(asset="training_set", name="outside_mask_unchanged", blocking=True,
                description="Every clear pixel of images/N.png equals surface/N.png; masks are 0/255.")
def training_set_outside_mask_unchanged(storage: CloudGANStorage) -> dg.AssetCheckResult:
    dest = storage.path("training_set")
    try:
        images, masks, _ = read_training_set(dest)
        _, surfaces = read_training_sources(dest)
    except (CloudGANError, OSError) as exc:
        return _failed(f"cannot read the training set {dest}: {exc}")
    return _result(check_outside_mask_unchanged(images, surfaces, masks))


@dg.asset_check(asset="training_set", name="min_pairs", blocking=True,
                description="The training set has at least min_pairs pairs.")
def training_set_min_pairs(config: MinPairsConfig, storage: CloudGANStorage) -> dg.AssetCheckResult:
    dest = storage.path("training_set")
    try:
        n = len(read_manifest(dest))
    except (CloudGANError, OSError) as exc:
        return _failed(f"cannot read the training set {dest}: {exc}")
    return _result(check_min_pairs(n, config.min_pairs))


COMPOSITE_CHECKS = [composites_aligned, composites_outside_mask_unchanged, composites_inside_mask_changed,
                    composites_cloud_fraction_range, composites_tiles_sane]
TRAINING_SET_CHECKS = [training_set_aligned, training_set_outside_mask_unchanged, training_set_min_pairs]
DATASET_CHECKS = [*COMPOSITE_CHECKS, *TRAINING_SET_CHECKS]
