"""Hostile science inputs: products and settings that used to give a wrong result that looked right.

Every product here is a real netCDF product written by :func:`cloudgan_core.simulate.simulate_product`
and then edited (one variable or attribute rewritten with xarray + h5netcdf, the manifest MD5
updated so the edited file passes verification). Config tests run real Dagster steps.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from pydantic import ValidationError

from cloudgan_assets import dataset_checks
from cloudgan_assets.assets import clouds, dataset, ingest, scenes, tiles
from cloudgan_assets.partitions import products_partitions
from cloudgan_core.cover import CoverRange
from cloudgan_core.errors import CloudGANError, ProductError
from cloudgan_core.simulate import simulate_product
from cloudgan_core.slstr.flags import PIXEL_FLAG_BITS, scene_masks
from cloudgan_core.slstr.geometry import solar_zenith
from cloudgan_core.slstr.product import open_product
from cloudgan_core.slstr.radiance import reflectance
from cloudgan_core.stages import false_color, masks, products, sorted_tiles
from cloudgan_core.stages import tiles as tiles_stage
from cloudgan_core.stages.tiles import read_group
from cloudgan_core.storage import asset_dir
from cloudgan_core.tiles import slice_tiles, sort_tiles
from tests.dagster_helpers import SMALL_RUN_CONFIG, failure_text, make_inbox, resources_for

TILE = 64


# -- helpers ---------------------------------------------------------------------------------------

def _edit_nc(folder: Path, fname: str, edit: Callable[[xr.Dataset], xr.Dataset]) -> None:
    """Rewrite ``folder/fname`` as ``edit(raw dataset)``: raw = not CF-decoded (packed ints, the
    ``_FillValue``/``scale_factor`` attributes as stored), global attributes kept unless edited."""
    path = folder / fname
    with xr.open_dataset(path, engine="h5netcdf", decode_cf=False) as ds:
        ds = ds.load()
    out = edit(ds)
    for name in out.variables:
        out[name].encoding = {}
    path.unlink()
    out.to_netcdf(path, engine="h5netcdf")


def _set_values(var: str, fn: Callable[[np.ndarray, dict], np.ndarray]) -> Callable[[xr.Dataset], xr.Dataset]:
    """An edit that replaces the raw values of ``var`` by ``fn(values, attrs)``."""

    def edit(ds: xr.Dataset) -> xr.Dataset:
        v = ds[var]
        ds[var] = xr.DataArray(np.asarray(fn(v.values.copy(), v.attrs), dtype=v.dtype), dims=v.dims, attrs=v.attrs)
        return ds

    return edit


@dataclass(frozen=True)
class Chain:
    """The per-product stages of one product under a storage root; ``chain[asset]`` is its folder."""

    root: Path
    key: str

    def __getitem__(self, asset: str) -> Path:
        return asset_dir(self.root, asset, self.key)


def _chain(product: Path, root: Path, *, tile_size: int = TILE) -> Chain:
    """Register (MD5-verified), masks, false colour, tiles, sorted tiles: the per-product stages."""
    key = products.register(root, product).product
    masks.build(root, key)
    false_color.build(root, key)
    tiles_stage.build(root, key, tiles_stage.TilesConfig(tile_size=tile_size))
    sorted_tiles.build(root, key)
    return Chain(root, key)


@pytest.fixture(scope="module")
def baseline(sim_product: Path, tmp_path_factory: pytest.TempPathFactory) -> Chain:
    """The stages on the unedited shared product (what the edited copies are compared with)."""
    return _chain(sim_product, tmp_path_factory.mktemp("baseline"))


# -- 1. silent wrong successes: radiance fill, solar irradiance, tie grid, empty grids -------------

def test_radiance_fill_makes_pixels_invalid_in_the_tiles(copy_product, update_manifest_md5, baseline, tmp_path):
    """S5 radiance fill over the generator-input tiles: those tiles lose every valid pixel and
    are no longer generator inputs (the old code kept valid_fraction 1 and fed them on)."""
    before = pd.read_csv(baseline["sorted_tiles"] / "index.csv")
    chosen = before[before["gan_input"]]
    assert len(chosen) >= 2
    folder = copy_product()

    def fill(values: np.ndarray, attrs: dict) -> np.ndarray:
        for r, c in zip(chosen["row"], chosen["col"]):
            values[r:r + TILE, c:c + TILE] = attrs["_FillValue"]
        return values

    _edit_nc(folder, "S5_radiance_an.nc", _set_values("S5_radiance_an", fill))
    update_manifest_md5(folder, "S5_radiance_an.nc")
    d = _chain(folder, tmp_path)

    valid = np.load(d["false_color"] / "valid.npy")
    flags = np.load(d["masks"] / "flags.npy")
    assert valid.dtype == np.uint8 and valid.shape == flags.shape
    filled = np.zeros(flags.shape, bool)
    for r, c in zip(chosen["row"], chosen["col"]):
        filled[r:r + TILE, c:c + TILE] = True
    bands = np.load(d["false_color"] / "bands.npy")
    np.testing.assert_array_equal(valid.astype(bool), np.isfinite(bands).all(axis=0))
    assert not valid[filled].any()
    assert valid[~filled & ((flags & PIXEL_FLAG_BITS["unfilled"]) == 0)].all()

    after = pd.read_csv(d["sorted_tiles"] / "index.csv")
    hit = after["tile"].isin(chosen["tile"])
    assert (after.loc[hit, "valid_fraction"] == 0).all()
    assert not after.loc[hit, "gan_input"].any() and not after.loc[hit, "surface_candidate"].any()
    # the other tiles are untouched
    np.testing.assert_array_equal(after.loc[~hit, "valid_fraction"], before.loc[~hit, "valid_fraction"])
    assert sorted_tiles.read(d.root, d.key).gan_input.index == [
        r for r in read_group(baseline["sorted_tiles"] / "gan_input").index if r["tile"] not in set(chosen["tile"])]


def test_all_radiance_fill_fails_the_partition(copy_product, update_manifest_md5, tmp_path):
    """Every S3 radiance is fill: the old code wrote an all-black false colour and sorted black
    tiles into the generator inputs. Now the false-colour stage fails and writes nothing."""
    folder = copy_product()
    _edit_nc(folder, "S3_radiance_an.nc", _set_values("S3_radiance_an", lambda v, a: np.full_like(v, a["_FillValue"])))
    update_manifest_md5(folder, "S3_radiance_an.nc")
    key = products.register(tmp_path, folder).product
    stored = products.read(tmp_path, key)
    masks.build(tmp_path, key)
    with pytest.raises(ProductError, match=r"no valid visible pixel in S3A_SL_1_RBT___.*: .*all fill") as err:
        false_color.build(tmp_path, key)
    assert str(stored) in str(err.value)
    assert not (tmp_path / "false_color").exists()


def test_night_scene_fails_with_no_valid_visible_pixel(tmp_path):
    """The sun below the horizon everywhere: black image before, a clear error now."""
    path = simulate_product(tmp_path / "in", seed=4, rows=64, cols=128, sza_range=(95.0, 110.0))
    key = products.register(tmp_path, path).product
    with pytest.raises(ProductError, match=r"no valid visible pixel in S3A_.*: .*night"):
        false_color.build(tmp_path, key)
    assert not (tmp_path / "false_color").exists()


def test_tiles_fail_when_no_pixel_is_valid(tmp_path):
    """Reflectance is finite (sun up), but every pixel is beyond the masks' solar-zenith limit:
    the tiles stage fails and says why instead of writing tiles that are all invalid."""
    path = simulate_product(tmp_path / "in", seed=4, rows=128, cols=128, sza_range=(86.0, 89.0))
    key = products.register(tmp_path, path).product
    masks.build(tmp_path, key)
    false_color.build(tmp_path, key)
    with pytest.raises(ProductError, match=rf"no valid visible pixel in {re.escape(key)}: 0 of 16384 pixels .*"
                                           r"solar zenith above the limit: 16384"):
        tiles_stage.build(tmp_path, key, tiles_stage.TilesConfig(tile_size=TILE))
    assert not (tmp_path / "tiles").exists()


@pytest.mark.parametrize("bad", [0.0, -5.0, np.nan])
def test_bad_solar_irradiance_of_one_detector_makes_its_pixels_invalid(copy_product, sim_truth, bad):
    """Detector 2's E0 is zero, negative or NaN: its pixels become invalid (the old code gave
    inf / negative reflectance, i.e. saturated or black pixels, or silently used the mean E0)."""
    folder = copy_product()

    def set_det2(values: np.ndarray, attrs: dict) -> np.ndarray:
        values[2] = bad
        return values

    _edit_nc(folder, "S1_quality_an.nc", _set_values("S1_solar_irradiance_an", set_det2))
    with open_product(folder) as product:
        data = false_color.compute(product)
    valid, refl, image = data.valid.astype(bool), data.bands, data.image
    det2 = np.zeros(valid.shape, bool)
    det2[2::4] = True  # the simulator's detector of row r is r % 4
    assert np.isnan(refl[0][det2]).all() and not np.isinf(refl).any()
    assert not valid[det2].any()
    np.testing.assert_array_equal(valid[~det2], ~sim_truth.unfilled[~det2])
    assert (image[det2] == 0).all()


def test_unknown_detector_makes_its_pixels_invalid(copy_product, sim_truth):
    """detector_an says 7 (only 4 detectors have an E0) or fill on two rows: the old code clamped 7
    to the last detector and fill to detector 0, i.e. used another detector's irradiance."""
    folder = copy_product()

    def damage(values: np.ndarray, attrs: dict) -> np.ndarray:
        values[10] = 7
        values[11] = 255
        return values

    _edit_nc(folder, "indices_an.nc", _set_values("detector_an", damage))
    with open_product(folder) as product:
        valid = false_color.compute(product).valid.astype(bool)
    assert not valid[10:12].any()
    np.testing.assert_array_equal(np.delete(valid, [10, 11], axis=0), ~np.delete(sim_truth.unfilled, [10, 11], axis=0))


def test_simulated_day_flags_agree_with_the_interpolated_angle(tmp_path):
    """The simulator draws the day flag on the image grid and the angle on the tie grid: with the
    tie rows placed as the reader places them, the two agree on every pixel."""
    path = simulate_product(tmp_path, seed=9, rows=200, cols=256, sza_range=(75.0, 105.0))
    with open_product(path) as product:
        masks = scene_masks(product)
        sza = solar_zenith(product, masks.shape)
    day = masks.flag("day")
    assert day.any() and (~day).any()
    near = np.abs(sza - 90.0) < 1e-3  # float32 rounding at the terminator itself
    np.testing.assert_array_equal(day[~near], (sza < 90.0)[~near])


def test_no_usable_solar_irradiance_is_an_error(copy_product):
    folder = copy_product()
    _edit_nc(folder, "S3_quality_an.nc", _set_values("S3_solar_irradiance_an", lambda v, a: np.zeros_like(v)))
    with open_product(folder) as product:
        sza = solar_zenith(product, (240, 320))
        with pytest.raises(ProductError, match=r"S3_quality_an\.nc: S3_solar_irradiance_an has no positive finite "
                                               r"value \(all 4 detectors"):
            reflectance(product, "S3", sza)


def test_one_tie_column_is_an_error(copy_product):
    """A tie grid with one column used to give a solar zenith constant across track."""
    folder = copy_product()
    _edit_nc(folder, "geometry_tn.nc", lambda ds: ds.isel(columns=slice(3, 4)))
    with open_product(folder) as product:
        with pytest.raises(ProductError, match=r"geometry_tn\.nc: cannot interpolate across track with 1 column"):
            solar_zenith(product, (240, 320))
        with pytest.raises(ProductError, match="cannot interpolate across track with 1 column"):
            scene_masks(product)


def test_one_tie_row_is_an_error(copy_product):
    folder = copy_product()
    _edit_nc(folder, "geometry_tn.nc", lambda ds: ds.isel(rows=slice(0, 1)))
    with open_product(folder) as product:
        with pytest.raises(ProductError, match=r"geometry_tn\.nc: cannot interpolate along track with 1 row"):
            solar_zenith(product, (240, 320))


def test_tie_grid_that_does_not_cover_the_image_is_an_error(copy_product):
    """A tie grid cut to 40 rows covers 80 of the 240 image rows: the old code extrapolated the
    solar zenith linearly over the missing 160 rows."""
    folder = copy_product()
    _edit_nc(folder, "geometry_tn.nc", lambda ds: ds.isel(rows=slice(0, 40)))
    with open_product(folder) as product:
        with pytest.raises(ProductError, match=r"geometry_tn\.nc: the tie grid has 40 rows .* needs tie rows 0 to "
                                               r"119\.5"):
            solar_zenith(product, (240, 320))


def test_tie_row_with_a_single_finite_value_is_not_made_constant(copy_product):
    """A tie row with one finite column cannot be interpolated across track: its image rows get
    no solar zenith (invalid) instead of a constant one."""
    folder = copy_product()

    def damage(values: np.ndarray, attrs: dict) -> np.ndarray:
        values[60, 1:] = np.nan
        return values

    _edit_nc(folder, "geometry_tn.nc", _set_values("solar_zenith_tn", damage))
    with open_product(folder) as product:
        sza = solar_zenith(product, (240, 320))
        masks = scene_masks(product)
    assert np.isnan(sza[120]).all()  # image row 120 sits on tie row 60
    assert np.isfinite(sza[:118]).all() and np.isfinite(sza[123:]).all()
    assert not masks.valid[120].any()


@pytest.mark.parametrize("fname", ["flags_an.nc", "geometry_tn.nc"])
def test_zero_row_grids_are_clear_errors(copy_product, update_manifest_md5, tmp_path, fname):
    folder = copy_product()
    _edit_nc(folder, fname, lambda ds: ds.isel(rows=slice(0, 0)))
    update_manifest_md5(folder, fname)
    key = products.register(tmp_path, folder).product
    expected = "flags_an.nc has 0 rows" if fname == "flags_an.nc" else "cannot interpolate along track with 0 rows"
    with pytest.raises(ProductError, match=expected) as err:
        masks.build(tmp_path, key)
    assert fname in str(err.value)
    with pytest.raises(ProductError, match=expected):
        false_color.build(tmp_path, key)
    assert not (tmp_path / "masks").exists() and not (tmp_path / "false_color").exists()


def test_tile_larger_than_the_scene_is_an_error(baseline, tmp_path):
    """The old tiles stage wrote an empty tiles folder when no tile fits."""
    for asset in ("masks", "false_color"):
        shutil.copytree(baseline[asset], asset_dir(tmp_path, asset, baseline.key))
    with pytest.raises(ValueError, match=rf"tile_size 4096 is larger than the scene 240 x 320 of {baseline.key}"):
        tiles_stage.build(tmp_path, baseline.key, tiles_stage.TilesConfig(tile_size=4096))
    assert not (tmp_path / "tiles").exists()


# -- 2. settings validated in the core ------------------------------------------------------------

def _some_tiles():
    flags = np.full((100, 200), PIXEL_FLAG_BITS["valid"] | PIXEL_FLAG_BITS["day"], np.uint16)
    return slice_tiles(np.zeros((100, 200, 3), np.uint8), flags, "p", 100)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"edges": [5, 50]}, "bin edges must increase strictly from 0 to 100 (percent), got [5.0, 50.0]"),
    ({"edges": [0, 50, 120]}, "bin edges must increase strictly from 0 to 100 (percent), got [0.0, 50.0, 120.0]"),
    ({"min_valid_fraction": 1.5}, "min_valid_fraction must be within [0, 1], got 1.5"),
    ({"min_valid_fraction": float("nan")}, "min_valid_fraction must be within [0, 1], got nan"),
])
def test_sort_tiles_validates_its_settings(kwargs, message):
    with pytest.raises(ValueError) as err:
        sort_tiles(_some_tiles(), **kwargs)
    assert str(err.value) == message and isinstance(err.value, CloudGANError)


def test_the_cover_range_is_checked_when_it_is_made():
    with pytest.raises(ValueError) as err:
        sort_tiles(_some_tiles(), cover=CoverRange(95.0, 10.0))
    assert str(err.value) == ("cover range must satisfy 0 <= min_cover < max_cover <= 100 (percent), got "
                              "min_cover=95.0, max_cover=10.0") and isinstance(err.value, CloudGANError)


def test_sort_stage_checks_its_settings_before_reading(tmp_path):
    with pytest.raises(ValueError, match=r"bin edges must increase strictly from 0 to 100"):
        sorted_tiles.build(tmp_path, "p", sorted_tiles.SortedTilesConfig(bin_edges=[5, 50]))
    for bad in (30, 0, -8, 6.5, True):
        with pytest.raises(ValueError, match=r"tile_size must be a positive multiple of 4"):
            tiles_stage.build(tmp_path, "p", tiles_stage.TilesConfig(tile_size=bad))
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("limit", [0.0, -1.0, 90.5, 180.0, float("nan")])
def test_scene_masks_validates_the_solar_zenith_limit(sim_product, limit):
    with open_product(sim_product) as product:
        with pytest.raises(ValueError, match=r"max_solar_zenith must be within \(0, 90\] degrees"):
            scene_masks(product, max_solar_zenith=limit)


@pytest.mark.parametrize(("cls", "values", "texts"), [
    (scenes.MasksConfig, {"max_solar_zenith": 95.0}, ["max_solar_zenith", "(0, 90] degrees"]),
    (scenes.MasksConfig, {"source": "guess"}, ["source", "summary_cloud"]),
    (tiles.TilesConfig, {"tile_size": 30}, ["tile_size", "positive multiple of 4"]),
    (tiles.SortedTilesConfig, {"bin_edges": [5, 50]}, ["bin_edges", "from 0 to 100"]),
    (tiles.SortedTilesConfig, {"min_valid_fraction": 1.5}, ["min_valid_fraction", "[0, 1]"]),
    (tiles.SortedTilesConfig, {"min_cover": 95.0, "max_cover": 10.0}, ["min_cover", "max_cover",
                                                                       "0 <= min_cover < max_cover <= 100"]),
    (clouds.SyntheticCloudsConfig, {"min_cover": 50.0, "max_cover": 50.0}, ["min_cover", "max_cover",
                                                                   "0 <= min_cover < max_cover"]),
    (clouds.SyntheticCloudsConfig, {"max_cover": 150.0}, ["max_cover", "<= 100"]),
    (clouds.SyntheticCloudsConfig, {"mean_tau": 500.0}, ["mean_tau", "[0.5, 150]"]),
    (clouds.SyntheticCloudsConfig, {"generator": "vae"}, ["generator", "gan", "procedural"]),
    (dataset.CompositesConfig, {"min_opacity": 0.9, "max_opacity": 0.5}, ["max_opacity, min_opacity", "removed"]),
    (dataset.CompositesConfig, {"whiten": -0.1}, ["whiten", "removed"]),
    (dataset.CompositesConfig, {"blend": "screen"}, ["blend", "render", "original"]),
    (dataset.TrainingSetConfig, {"train_fraction": 0.9}, ["train_fraction", "sum to 1"]),
    (dataset.TrainingSetConfig, {"val_fraction": -0.1, "train_fraction": 1.0}, ["val_fraction", "[0, 1]"]),
    (dataset.TrainingSetConfig, {"min_cover": 80.0, "max_cover": 20.0}, ["min_cover", "max_cover", "percent"]),
    (dataset.TrainingSetConfig, {"max_cover": 101.0}, ["max_cover", "<= 100"]),
    (dataset.TrainingSetConfig, {"cover_bins": 0}, ["cover_bins", "[1, 1000]"]),
    (dataset.TrainingSetConfig, {"max_pairs": -1}, ["max_pairs", ">= 0"]),
    (dataset.SurfaceTilesConfig, {"tile_size": 250}, ["tile_size", "positive multiple of 4"]),
    (dataset_checks.CoverRangeConfig, {"min_cover": 0.1, "max_cover": 0.05}, ["0 <= min_cover < max_cover"]),
    (dataset_checks.InsideChangedConfig, {"min_share": 1.5}, ["min_share", "[0, 1]"]),
    (dataset_checks.MinPairsConfig, {"min_pairs": -1}, ["min_pairs", ">= 0"]),
    (clouds.TrainGeneratorConfig, {"crop": 30}, ["crop", "multiple of 4"]),
])
def test_config_classes_validate(cls, values, texts):
    with pytest.raises(ValidationError) as err:
        cls(**values)
    for text in texts:
        assert text in str(err.value)


def test_config_defaults_are_valid():
    for cls in (scenes.MasksConfig, scenes.FalseColorConfig, tiles.TilesConfig, tiles.SortedTilesConfig,
                clouds.SyntheticCloudsConfig, dataset.CompositesConfig, dataset.TrainingSetConfig,
                dataset.SurfaceTilesConfig, clouds.TrainGeneratorConfig, dataset_checks.CoverRangeConfig,
                dataset_checks.InsideChangedConfig, dataset_checks.MinPairsConfig):
        cls()


# -- 2b. bad config in a real Dagster run: the step fails before it touches its output ------------

ASSETS = [*dg.load_assets_from_modules([ingest, scenes, tiles])]


@pytest.fixture(scope="module")
def materialized(tmp_path_factory: pytest.TempPathFactory):
    """One partition materialized (products .. sorted_tiles) on a temporary instance."""
    tmp = tmp_path_factory.mktemp("dagster")
    (key,) = make_inbox(tmp / "inbox", seeds=(41,))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(products_partitions.name, [key])
        result = dg.materialize(ASSETS, partition_key=key, instance=instance, resources=resources_for(tmp),
                                run_config=SMALL_RUN_CONFIG)
        assert result.success
        yield tmp, key, instance


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every stored output file (the partition lock files under ``_locks/`` are not outputs)."""
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file() and p.relative_to(root).parts[0] != "_locks"}


@pytest.mark.slow
@pytest.mark.parametrize(("asset", "config", "texts"), [
    ("masks", {"max_solar_zenith": 95.0}, ["max_solar_zenith", "must be within (0, 90] degrees, got 95.0"]),
    ("tiles", {"tile_size": 30}, ["tile_size", "must be a positive multiple of 4, got 30"]),
    ("tiles", {"tile_size": 4096}, ["tile_size 4096 is larger than the scene 192 x 256 of S3A_"]),
    ("sorted_tiles", {"bin_edges": [5.0, 50.0]}, ["bin_edges", "must increase strictly from 0 to 100 (percent)"]),
    ("sorted_tiles", {"min_valid_fraction": 1.5}, ["min_valid_fraction", "must be within [0, 1], got 1.5"]),
    ("sorted_tiles", {"min_cover": 95.0, "max_cover": 10.0},
     ["cover range must satisfy 0 <= min_cover < max_cover <= 100 (percent), got min_cover=95.0, max_cover=10.0"]),
])
def test_bad_config_fails_the_step_and_keeps_the_stored_output(materialized, asset, config, texts):
    tmp, key, instance = materialized
    root = tmp / "storage"
    before = _snapshot(root)
    assert any(name.startswith(f"{asset}/") for name in before)
    result = dg.materialize(ASSETS, selection=[asset], partition_key=key, instance=instance,
                            resources=resources_for(tmp), run_config={"ops": {asset: {"config": config}}},
                            raise_on_error=False)
    assert not result.success
    message = failure_text(result)
    for text in texts:
        assert text in message
    assert _snapshot(root) == before
    assert not [p for p in root.rglob(".*") if p.name.startswith(".")]  # no temporary left behind


@pytest.mark.slow
def test_bad_training_set_config_fails_before_reading(tmp_path):
    """An unpartitioned dataset step with a bad split fails on its config, on an empty storage."""
    with dg.instance_for_test() as instance:
        result = dg.materialize([*dg.load_assets_from_modules([dataset])], selection=["training_set"],
                                instance=instance, resources=resources_for(tmp_path), raise_on_error=False,
                                run_config={"ops": {"training_set": {"config": {"train_fraction": 0.5}}}})
    assert not result.success
    message = failure_text(result)
    assert "train_fraction" in message and "sum to 1" in message
    assert not (tmp_path / "storage").exists()
