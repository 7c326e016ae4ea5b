"""The science of the reader: flags found by name, bitwise cloud test, tie-point solar zenith,
reflectance with adjustment factors and per-detector irradiance, false colour, bayes fallback,
night/twilight validity, grid sizes read from the files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from cloudgan_core.errors import ProductError
from cloudgan_core.simulate import CONFIDENCE_MEANINGS, RADIANCE_SCALE, simulate_product
from cloudgan_core.slstr.flags import flag_bits, scene_masks
from cloudgan_core.slstr.geometry import fill_nan_columns, parse_resolution, solar_zenith, tie_to_image
from cloudgan_core.slstr.product import open_product
from cloudgan_core.slstr.radiance import ADJUSTMENT_FACTORS, detector_index, false_color, reflectance, solar_irradiance
from cloudgan_core.stages import false_color as false_color_stage
from cloudgan_core.stages import masks as masks_stage
from cloudgan_core.stages import products

CONF_NAMES = CONFIDENCE_MEANINGS.split()
SUMMARY_CLOUD = 1 << CONF_NAMES.index("summary_cloud")
SUMMARY_POINTING = 1 << CONF_NAMES.index("summary_pointing")


def _rewrite_flags(folder: Path, confidence: np.ndarray | None = None, *, masks: np.ndarray | None = None,
                   meanings: str | None = None, bayes: np.ndarray | None = None) -> None:
    """Rewrite ``flags_an.nc`` in ``folder`` keeping its global attributes (grid placement)."""
    path = folder / "flags_an.nc"
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        ds = ds.load()
    out = {}
    for name in ds.data_vars:
        var = ds[name]
        values, attrs = var.values, dict(var.attrs)
        if name == "confidence_an":
            if confidence is not None:
                values = confidence
            if masks is not None:
                attrs = {"flag_masks": masks, "flag_meanings": meanings}
        if name == "bayes_an" and bayes is not None:
            values = bayes
        out[name] = xr.DataArray(values.astype(var.dtype), dims=var.dims, attrs=attrs)
    path.unlink()
    xr.Dataset(out, attrs=ds.attrs).to_netcdf(path, engine="h5netcdf")


def _confidence(folder: Path) -> tuple[np.ndarray, dict]:
    with xr.open_dataset(folder / "flags_an.nc", engine="h5netcdf") as ds:
        return ds["confidence_an"].values.copy(), dict(ds["confidence_an"].attrs)


# -- flags -------------------------------------------------------------------------------------

def test_flag_bits_parsing() -> None:
    bits = flag_bits({"flag_masks": "[ 1 2 4 8 ]", "flag_meanings": "a spare b c"})
    assert bits == {"a": 1, "b": 4, "c": 8}
    bits = flag_bits({"flag_masks": np.array([16384, 1], np.uint16), "flag_meanings": "summary_cloud coastline"})
    assert bits == {"summary_cloud": 16384, "coastline": 1}
    with pytest.raises(ProductError, match="flags_an.nc: flag_meanings has 2 names but flag_masks has 1"):
        flag_bits({"flag_masks": [1], "flag_meanings": "a b"}, "flags_an.nc")
    with pytest.raises(ProductError, match="no flag_masks/flag_meanings"):
        flag_bits({"flag_meanings": "a"}, "flags_an.nc")


def test_mask_equals_truth(sim_product: Path, sim_truth) -> None:
    with open_product(sim_product) as product:
        masks = scene_masks(product)
    assert masks.source == "summary_cloud" and masks.notes == []
    assert masks.flags.dtype == np.uint16 and masks.shape == sim_truth.cloud.shape
    np.testing.assert_array_equal(masks.cloud, sim_truth.cloud & ~sim_truth.unfilled)
    np.testing.assert_array_equal(masks.flag("unfilled"), sim_truth.unfilled)
    np.testing.assert_array_equal(masks.flag("land"), sim_truth.land)
    np.testing.assert_array_equal(masks.flag("ocean"), ~sim_truth.land)
    np.testing.assert_array_equal(masks.flag("snow"), sim_truth.snow)
    np.testing.assert_array_equal(masks.valid, ~sim_truth.unfilled)  # default scene is all daytime, sza < 85
    fr = masks.fractions()
    assert fr["cloud_fraction"] == pytest.approx((sim_truth.cloud & ~sim_truth.unfilled).mean())
    assert 0 < fr["cloud_fraction"] < 1
    assert fr["cloud_fraction_of_valid"] == pytest.approx(sim_truth.cloud[~sim_truth.unfilled].mean())


def test_flags_found_by_name_in_a_permuted_layout(copy_product, sim_truth) -> None:
    folder = copy_product()
    conf, attrs = _confidence(folder)
    old = flag_bits(attrs)
    perm = np.random.default_rng(3).permutation(len(CONF_NAMES))
    names = [CONF_NAMES[i] for i in perm]  # new order of meanings; bit k now means names[k]
    new_masks = (np.uint16(1) << np.arange(len(names), dtype=np.uint16)).astype(np.uint16)
    new = np.zeros_like(conf)
    for k, name in enumerate(names):
        if name != "spare":
            new |= ((conf & old[name]) != 0).astype(np.uint16) << np.uint16(k)
    assert names.index("summary_cloud") != CONF_NAMES.index("summary_cloud")
    # shuffle the attribute order too (masks no longer ascending)
    order = np.random.default_rng(4).permutation(len(names))
    _rewrite_flags(folder, new, masks=new_masks[order], meanings=" ".join(names[i] for i in order))
    with open_product(folder) as product:
        masks = scene_masks(product)
    np.testing.assert_array_equal(masks.cloud, sim_truth.cloud & ~sim_truth.unfilled)
    np.testing.assert_array_equal(masks.flag("land"), sim_truth.land)
    np.testing.assert_array_equal(masks.flag("unfilled"), sim_truth.unfilled)
    np.testing.assert_array_equal(masks.flag("snow"), sim_truth.snow)


def test_summary_cloud_is_a_bitwise_test(copy_product, sim_truth) -> None:
    folder = copy_product()
    conf, _ = _confidence(folder)
    conf = conf | np.uint16(SUMMARY_POINTING)  # a higher bit on every pixel: >= 16384 would call all cloud
    day = 1 << CONF_NAMES.index("day")
    conf[5, 100] = SUMMARY_POINTING | day  # only the higher bit (and day): not cloud
    conf[6, 100] = SUMMARY_CLOUD | day  # only the cloud bit: cloud
    _rewrite_flags(folder, conf)
    truth = sim_truth.cloud & ~sim_truth.unfilled
    truth[5, 100], truth[6, 100] = False, True
    with open_product(folder) as product:
        masks = scene_masks(product)
    np.testing.assert_array_equal(masks.cloud, truth)


def test_missing_flag_name_is_clear(copy_product) -> None:
    folder = copy_product()
    conf, attrs = _confidence(folder)
    meanings = attrs["flag_meanings"].replace("summary_cloud", "other_cloud")
    _rewrite_flags(folder, conf, masks=attrs["flag_masks"], meanings=meanings)
    with open_product(folder) as product:
        with pytest.raises(ProductError, match=r"flags_an\.nc: flag 'summary_cloud' not found in flag_meanings"):
            scene_masks(product)


def test_day_bit_unset_is_invalid(copy_product, sim_truth) -> None:
    folder = copy_product()
    conf, _ = _confidence(folder)
    day = np.uint16(1 << CONF_NAMES.index("day"))
    conf[:40] &= ~day
    _rewrite_flags(folder, conf)
    with open_product(folder) as product:
        masks = scene_masks(product)
    assert not masks.valid[:40].any()
    np.testing.assert_array_equal(masks.valid[40:], ~sim_truth.unfilled[40:])


def test_bayes_falls_back_with_a_note(sim_product: Path, sim_truth, tmp_path: Path) -> None:
    with open_product(sim_product) as product:
        masks = scene_masks(product, source="bayes")
    assert masks.source == "summary_cloud"
    assert len(masks.notes) == 1 and "bayes_an is 255 everywhere" in masks.notes[0]
    np.testing.assert_array_equal(masks.cloud, sim_truth.cloud & ~sim_truth.unfilled)
    key = products.register(tmp_path, sim_product).product
    result = masks_stage.build(tmp_path, key, masks_stage.MasksConfig(source="bayes"))
    record = json.loads((masks_stage.folder(tmp_path, key) / "masks.json").read_text())
    assert record["cloud_source"] == "summary_cloud" and record["notes"] == masks.notes == list(result.notes)
    assert masks_stage.read(tmp_path, key).summary == result.data.summary


def test_bayes_used_when_computed(tmp_path: Path) -> None:
    path, truth = simulate_product(tmp_path, seed=11, rows=64, cols=128, bayes=True, return_truth=True)
    with open_product(path) as product:
        masks = scene_masks(product, source="bayes")
    assert masks.source == "bayes" and masks.notes == []
    np.testing.assert_array_equal(masks.cloud, truth.cloud & ~truth.unfilled)
    # prove the bayes variable is what is read: invert it and the mask follows
    single_moderate = np.uint8(2)
    _rewrite_flags(path, bayes=np.where(truth.cloud, 0, single_moderate).astype(np.uint8))
    with open_product(path) as product:
        masks = scene_masks(product, source="bayes")
        assert scene_masks(product).source == "summary_cloud"
    np.testing.assert_array_equal(masks.cloud, ~truth.cloud & ~truth.unfilled)
    with open_product(path) as product, pytest.raises(ValueError, match=r"source must be one of \('summary_cloud', 'bayes'\)"):
        scene_masks(product, source="guess")


def test_night_and_twilight_are_invalid(tmp_path: Path) -> None:
    path, truth = simulate_product(tmp_path, seed=5, rows=96, cols=128, sza_range=(70.0, 100.0), return_truth=True)
    with open_product(path) as product:
        masks = scene_masks(product)
        strict = scene_masks(product, max_solar_zenith=80.0)
    assert truth.sza.max() > 90 and truth.sza.min() < 85
    clear_of_edge = np.abs(truth.sza - 85.0) > 0.01
    expected = ~truth.unfilled & (truth.sza <= 85.0)
    np.testing.assert_array_equal(masks.valid[clear_of_edge], expected[clear_of_edge])
    np.testing.assert_array_equal(masks.flag("day"), truth.sza < 90)
    np.testing.assert_array_equal(masks.flag("twilight"), (truth.sza >= 85) & (truth.sza < 95))
    assert not (masks.valid & masks.flag("twilight")).any()
    assert strict.valid.sum() < masks.valid.sum()
    assert not strict.valid[truth.sza > 80.01].any()


def test_grid_sizes_come_from_the_files(tmp_path: Path) -> None:
    path = simulate_product(tmp_path, seed=2, rows=236, cols=300)
    with open_product(path) as product:
        with product.open_dataset("geometry_tn.nc") as ds:
            assert dict(ds.sizes) == {"rows": 118, "columns": ds.sizes["columns"]}
        masks = scene_masks(product)
    assert masks.shape == (236, 300)
    key = products.register(tmp_path / "store", path).product
    result = false_color_stage.build(tmp_path / "store", key)
    fc = false_color_stage.folder(tmp_path / "store", key)
    image = np.load(fc / "false_color.npy")
    assert image.shape == (236, 300, 3) and image.dtype == np.uint8
    assert np.load(fc / "bands.npy").shape == (9, 236, 300)
    assert (result.figures()["rows"], result.figures()["columns"]) == (236, 300)


# -- geometry ------------------------------------------------------------------------------------

def test_parse_resolution() -> None:
    assert parse_resolution("[ 500 500 ]") == (500.0, 500.0)
    assert parse_resolution("[ 16000 1000 ]") == (16000.0, 1000.0)
    with pytest.raises(ProductError, match=r"geometry_tn\.nc: cannot parse resolution attribute '500'"):
        parse_resolution("500", "geometry_tn.nc")


def test_fill_nan_columns() -> None:
    nan = np.nan
    tie = np.array([[nan, 1.0, nan, 3.0, nan, nan],
                    [2.0, 4.0, 6.0, 8.0, nan, nan],
                    [nan, nan, nan, nan, nan, nan]])
    before = tie.copy()
    out = fill_nan_columns(tie)
    np.testing.assert_array_equal(out[0], [1.0, 1.0, 2.0, 3.0, 3.0, 3.0])
    np.testing.assert_array_equal(out[1], [2.0, 4.0, 6.0, 8.0, 8.0, 8.0])
    assert np.isnan(out[2]).all()
    np.testing.assert_array_equal(np.isnan(tie), np.isnan(before))  # input untouched


def test_tie_to_image_is_exact_for_a_linear_field() -> None:
    # image grid 500 m offset 40; tie grid 16 km x 1 km offset 3; f = linear in image row/col.
    # Tie row i lies on image row 2 i (no half-pixel shift: all grids start on the same line).
    rows, cols, im_off, tn_off = 20, 96, 40, 3
    f = lambda r, c: 10.0 + 0.5 * r + 0.25 * c  # noqa: E731
    ti = np.arange(rows // 2)[:, None]
    tj = np.arange(9)[None, :]
    tie = f(ti * 2.0, im_off + (tj - tn_off) * 32.0)
    tie[:, -2:] = np.nan
    out = tie_to_image(tie, (rows, cols), tn_offset=tn_off, tn_res=(16000, 1000), im_offset=im_off, im_res=(500, 500))
    rr, cc = np.mgrid[0:rows, 0:cols]
    np.testing.assert_allclose(out, f(rr, cc), atol=1e-4)
    assert out.dtype == np.float32


def test_solar_zenith_matches_truth(sim_product: Path, sim_truth) -> None:
    with open_product(sim_product) as product:
        with product.open_dataset("geometry_tn.nc", ["solar_zenith_tn"]) as ds:
            tie = ds["solar_zenith_tn"].values
        sza = solar_zenith(product, sim_truth.sza.shape)
    assert np.isnan(tie[:, -1]).all() and np.isnan(tie[:, -2]).all()  # the NaN edge tie columns are there
    assert not np.isnan(tie[:, 0]).any()
    assert sza.shape == sim_truth.sza.shape and sza.dtype == np.float32
    assert np.isfinite(sza).all()
    np.testing.assert_allclose(sza, sim_truth.sza, atol=1e-3)


# -- reflectance and false colour ----------------------------------------------------------------

@pytest.fixture(scope="module")
def sim_reflectance(sim_product: Path, sim_truth) -> dict:
    with open_product(sim_product) as product:
        shape = sim_truth.sza.shape
        sza = solar_zenith(product, shape)
        det = detector_index(product, shape)
        out = {"det": det}
        for band in ("S1", "S3", "S5"):
            out[band] = reflectance(product, band, sza, detectors=det)
            out[band + "_raw"] = reflectance(product, band, sza, adjust=False, detectors=det)
            out[band + "_det0"] = reflectance(product, band, sza)
            out[band + "_e0"] = solar_irradiance(product, band)
    return out


@pytest.mark.parametrize("band", ["S1", "S3", "S5"])
def test_reflectance_recovers_the_simulated_surface(sim_reflectance: dict, sim_truth, band: str) -> None:
    refl = sim_reflectance[band]
    assert refl.dtype == np.float32 and refl.shape == sim_truth.sza.shape
    assert np.isnan(refl[sim_truth.unfilled]).all()
    clear = ~sim_truth.cloud & ~sim_truth.unfilled & ~sim_truth.snow
    ocean, land = clear & ~sim_truth.land, clear & sim_truth.land
    assert ocean.sum() > 100 and land.sum() > 100
    # the simulated reflectance (truth.bands), to within half an int16 count of radiance
    b = int(band[1:]) - 1
    ok = ~sim_truth.unfilled
    count = RADIANCE_SCALE[band] * np.pi * ADJUSTMENT_FACTORS[band] / (
        sim_reflectance[band + "_e0"][sim_reflectance["det"]] * np.cos(np.deg2rad(sim_truth.sza)))
    assert np.all(np.abs(refl - sim_truth.bands[b])[ok] <= 0.51 * count[ok] + 1e-6)


@pytest.mark.parametrize("band", ["S1", "S3", "S5"])
def test_adjustment_factor_and_detector_irradiance(sim_reflectance: dict, sim_truth, band: str) -> None:
    ok = ~sim_truth.unfilled
    ratio = sim_reflectance[band][ok] / sim_reflectance[band + "_raw"][ok]
    np.testing.assert_allclose(ratio, ADJUSTMENT_FACTORS[band], rtol=1e-6)
    # without the detector index every pixel uses detector 0's E0: off by E0[det]/E0[0]
    det, e0 = sim_reflectance["det"], sim_reflectance[band + "_e0"]
    assert e0.size == 4 and len(np.unique(e0)) == 4 and len(np.unique(det)) == 4
    expected = (e0[det] / e0[0])[ok]
    np.testing.assert_allclose(sim_reflectance[band + "_det0"][ok] / sim_reflectance[band][ok], expected, rtol=1e-5)


def test_false_color_formula() -> None:
    s1 = np.array([[0.1, 2.0, np.nan]], np.float32)
    s3 = np.array([[0.4, 0.8, 0.2]], np.float32)
    s5 = np.array([[0.1, -0.5, 0.5]], np.float32)
    out = false_color(s1, s3, s5)
    assert out.shape == (1, 3, 3) and out.dtype == np.uint8
    # R = (S3+S5)/2, G = S3, B = (S3+S1)/2; clipped to [0, 1]; x255 rounded; a pixel that is not
    # finite in one band is invalid and 0 in every channel
    expected = [[[64, 102, 64],     # (0.25, 0.4, 0.25) -> 63.75, 102, 63.75
                 [38, 204, 255],    # (0.15, 0.8, 1.4 clipped to 1) -> 38.25, 204, 255
                 [0, 0, 0]]]        # S1 NaN: invalid (was 89, 51, 0: a tinted pixel that looked real)
    assert out.tolist() == expected
    assert false_color(np.float32([[np.inf]]), np.float32([[0.5]]), np.float32([[0.5]])).tolist() == [[[0, 0, 0]]]
    # negative reflectance (noise) clips to 0
    assert false_color(np.float32([[-1.0]]), np.float32([[-0.2]]), np.float32([[-3.0]])).tolist() == [[[0, 0, 0]]]


def test_false_color_stage_matches_reflectance(sim_product: Path, sim_reflectance: dict, tmp_path: Path) -> None:
    key = products.register(tmp_path, sim_product).product
    false_color_stage.build(tmp_path, key)
    fc = false_color_stage.folder(tmp_path, key)
    image = np.load(fc / "false_color.npy")
    np.testing.assert_array_equal(image, false_color(sim_reflectance["S1"], sim_reflectance["S3"], sim_reflectance["S5"]))
    bands = np.load(fc / "bands.npy")  # S1..S9: S3 is plane 2
    np.testing.assert_array_equal(bands[2], sim_reflectance["S3"])
    with open_product(sim_product) as product:
        raw = false_color_stage.compute(product, false_color_stage.FalseColorConfig(adjustment_factors=False))
    np.testing.assert_array_equal(raw.bands[0], sim_reflectance["S1_raw"])
