"""The reader against one real (partial) SL_1_RBT product in ``../shared/slstr-real/``.

The facts asserted here are the ones its README states. Skipped when the folder is absent. The
big files are read once per module (fixtures), so the whole file takes a few seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from cloudgan_core.errors import ProductError
from cloudgan_core.slstr.flags import SceneMasks, flag_bits, scene_masks
from cloudgan_core.slstr.geometry import grid_attrs, solar_zenith
from cloudgan_core.slstr.manifest import MANIFEST_NAME
from cloudgan_core.slstr.product import MASK_FILES, Product, open_product
from cloudgan_core.slstr.radiance import reflectance
from cloudgan_core.stages import false_color, masks, products

AN_SHAPE, IN_SHAPE, TN_SHAPE = (2396, 3000), (1198, 1500), (1198, 130)


@pytest.fixture(scope="module")
def real(real_product_dir: Path) -> Product:
    with open_product(real_product_dir) as product:
        yield product


@pytest.fixture(scope="module")
def real_masks(real: Product) -> SceneMasks:
    return scene_masks(real, source="bayes")  # bayes_an is 255 here: falls back, with a note


@pytest.fixture(scope="module")
def real_confidence(real: Product) -> tuple[np.ndarray, dict[str, int]]:
    with real.open_dataset("flags_an.nc", ["confidence_an"]) as ds:
        return ds["confidence_an"].values, flag_bits(ds["confidence_an"].attrs)


@pytest.fixture(scope="module")
def real_sza(real: Product) -> np.ndarray:
    return solar_zenith(real, AN_SHAPE)


def test_manifest(real: Product, real_product_dir: Path) -> None:
    m = real.manifest
    assert m.product_type == "SL_1_RBT___"
    assert m.product_name == real_product_dir.name
    assert m.platform == "S3A" and m.timeliness == "NR"
    assert m.start_time.startswith("2017-03-15T11:34")
    assert m.cloudy_pixels_percentage is not None and 0 <= m.cloudy_pixels_percentage <= 100
    assert m.footprint_wkt is not None and m.footprint_wkt.startswith("POLYGON((")
    # the manifest lists the whole product, including the files missing from this partial copy
    assert "S1_radiance_an.nc" in m.files and not real.has("S1_radiance_an.nc")


def test_grid_sizes_and_offsets(real: Product) -> None:
    expected = {"flags_an.nc": (AN_SHAPE, 1996, (500.0, 500.0)), "S8_BT_in.nc": (IN_SHAPE, 998, (1000.0, 1000.0)),
                "geometry_tn.nc": (TN_SHAPE, 64, (16000.0, 1000.0))}
    for name, (shape, offset, res) in expected.items():
        with real.open_dataset(name) as ds:
            assert (ds.sizes["rows"], ds.sizes["columns"]) == shape, name
            assert grid_attrs(ds.attrs, name) == (offset, res), name


def test_flags_parsed_by_name(real_confidence) -> None:
    conf, bits = real_confidence
    assert conf.shape == AN_SHAPE and conf.dtype == np.uint16
    for name in ("summary_cloud", "unfilled", "day", "twilight", "land", "ocean", "snow", "sun_glint"):
        assert name in bits
    assert bits["summary_cloud"] == 1 << 14  # this baseline's layout, found by name
    summary_fraction = np.count_nonzero(conf & bits["summary_cloud"]) / conf.size
    assert summary_fraction == pytest.approx(0.972, abs=0.001)


def test_scene_masks(real_masks: SceneMasks, real_confidence) -> None:
    conf, bits = real_confidence
    assert real_masks.shape == AN_SHAPE
    assert real_masks.source == "summary_cloud"
    assert any("bayes_an is 255 everywhere" in n for n in real_masks.notes)
    unfilled = (conf & bits["unfilled"]) != 0
    np.testing.assert_array_equal(real_masks.cloud, ((conf & bits["summary_cloud"]) != 0) & ~unfilled)
    np.testing.assert_array_equal(real_masks.flag("unfilled"), unfilled)
    fr = real_masks.fractions()
    assert fr["cloud_fraction"] == pytest.approx(0.972, abs=0.0015)
    # twilight scene: valid only where the sun is at most 85 degrees from zenith and the day bit is set
    assert 0 < fr["valid_fraction"] < fr["day_fraction"] < 1
    assert not (real_masks.valid & ~real_masks.flag("sza_ok")).any()
    assert not (real_masks.valid & ~real_masks.flag("day")).any()


def test_solar_zenith(real_sza: np.ndarray) -> None:
    assert real_sza.shape == AN_SHAPE and np.isfinite(real_sza).all()  # NaN edge tie columns filled
    assert 76.5 < float(real_sza.min()) < 78.5 and 94.0 < float(real_sza.max()) < 95.5


def test_solar_zenith_agrees_with_the_day_flag(real_sza: np.ndarray, real_confidence) -> None:
    """The L1 processor sets the day bit where the solar zenith is below 90 deg. A pixel contradicts
    it when the day bit is set but the interpolated angle is >= 90 (any pixel: the processor sets
    day on unfilled pixels too), or when the day bit is unset on a filled pixel whose angle is < 90.

    Tie row i = r * res_an / res_tn (all grids start on the same along-track line): 11
    contradictions (2 day pixels at >= 90, 9 night pixels below 90; 0 + 9 in float64), all within
    0.015 deg of 90. The half-pixel shift i = (r + 0.5) * res_an / res_tn - 0.5 gave 991 (987 day
    pixels at >= 90, 4 night pixels below 90): the angle was off by a quarter of a tie row.
    """
    conf, bits = real_confidence
    day = (conf & bits["day"]) != 0
    filled = (conf & bits["unfilled"]) == 0
    wrong = (day & (real_sza >= 90.0)) | (~day & filled & (real_sza < 90.0))
    assert np.count_nonzero(wrong) <= 20
    assert np.abs(real_sza[wrong] - 90.0).max() < 0.05  # only where the sun is on the horizon
    assert np.count_nonzero(day) > 1_000_000 and np.count_nonzero(~day & filled) > 1_000_000  # both sides tested


def test_brightness_temperature_unpacks(real: Product) -> None:
    name = "S8_BT_in.nc"
    with xr.open_dataset(real.path / name, engine="h5netcdf", decode_cf=False) as ds:
        raw = ds["S8_BT_in"]
        assert raw.dtype == np.int16
        assert (raw.attrs["scale_factor"], raw.attrs["add_offset"], raw.attrs["_FillValue"]) == (0.01, 283.73, -32768)
        raw = raw.values
    with real.open_dataset(name, ["S8_BT_in"]) as ds:
        bt = ds["S8_BT_in"].values
    assert bt.shape == IN_SHAPE and bt.dtype.kind == "f"
    fill = raw == -32768
    assert fill.any()
    np.testing.assert_array_equal(np.isnan(bt), fill)
    np.testing.assert_allclose(bt[~fill], raw[~fill] * 0.01 + 283.73, rtol=1e-12)
    assert 200.0 < np.nanmin(bt) and np.nanmax(bt) < 320.0  # Kelvin over sea ice


def test_verify_present_files(real: Product, real_product_dir: Path) -> None:
    present = sorted(p.name for p in real_product_dir.iterdir() if p.name != MANIFEST_NAME)
    assert len(present) >= 20
    digests = real.verify(present)
    assert set(digests) == set(present)
    real.verify(MASK_FILES)


def test_missing_radiance_is_a_clear_error(real: Product, real_sza: np.ndarray, real_product_dir: Path,
                                           tmp_path: Path) -> None:
    with pytest.raises(ProductError) as err:
        reflectance(real, "S1", real_sza)
    assert str(real_product_dir) in str(err.value) and "missing required file S1_radiance_an.nc" in str(err.value)
    store = products.folder(tmp_path, real.id)
    with pytest.raises(ProductError, match="missing required file S1_radiance_an.nc"):
        products.register(tmp_path, real_product_dir)
    assert not store.exists()


def test_stages_on_the_partial_product(real: Product) -> None:
    real.verify(MASK_FILES)
    data = masks.compute(real, masks.MasksConfig(source="bayes"))
    figures = masks.MasksResult(Path("unused"), data).figures()
    assert figures["rows"] == AN_SHAPE[0] and figures["columns"] == AN_SHAPE[1]
    assert figures["cloud_fraction"] == pytest.approx(0.972, abs=0.0015)
    assert data.summary.notes and "255" in data.summary.notes[0]
    assert not masks.plausibility(data.summary).passed  # sea ice trips the gross-cloud test
    with pytest.raises(ProductError, match="missing required file S1_radiance_an.nc"):
        false_color.compute(real)
