"""The simulated scene is realistic and the written product says exactly what was simulated: the
reader recovers the nine true bands and the four angles; flags agree with the surface classes;
snow is bright in S3 and dark in S5, clouds bright and cold; sun glint where the geometry puts it;
shadows darken the surface down-sun of the clouds; the clouds are the project's rendered clouds."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import binary_dilation

from cloudgan_core.clouds import BANDS, REFLECTIVE, THERMAL, shadow_shift_per_km
from cloudgan_core.clouds.bands import Geometry
from cloudgan_core.simulate import (AN_RES, DESERT, FOREST, GLINT_FLAG_REFLECTANCE, GRASSLAND, HEADING_DEG,
                                    RADIANCE_SCALE, SEA, SEA_ICE, SNOW, SOIL, SURFACE_CLASSES, SceneTruth,
                                    simulate_product)
from cloudgan_core.slstr.flags import scene_masks
from cloudgan_core.slstr.geometry import GEOMETRY_FILE, grid_attrs, solar_zenith, tie_to_image
from cloudgan_core.slstr.product import open_product
from cloudgan_core.slstr.radiance import ADJUSTMENT_FACTORS, detector_index, reflectance, solar_irradiance

ROWS, COLS = 240, 320
S3, S5, S8 = BANDS.index("S3"), BANDS.index("S5"), BANDS.index("S8")


@pytest.fixture(scope="module")
def polar(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SceneTruth]:
    """A summer scene at 70 N: sea, sea ice, snow, forest, grassland, soil; 30 % cloud."""
    return simulate_product(tmp_path_factory.mktemp("polar"), seed=7, rows=ROWS, cols=COLS, cloud_cover=0.3,
                            land_fraction=0.4, latitude=70.0, return_truth=True)


@pytest.fixture(scope="module")
def subtropical(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SceneTruth]:
    """A scene at 30 N, mostly land (desert, soil, grassland, forest), 20 % cloud."""
    return simulate_product(tmp_path_factory.mktemp("sub"), seed=3, rows=ROWS, cols=COLS, cloud_cover=0.2,
                            land_fraction=0.8, latitude=30.0, return_truth=True)


def _read_bands(folder: Path, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, dict]:
    """(9, H, W) bands as the pipeline reads them (S7-S9 repeated 2 x 2), the solar zenith, and E0/detectors."""
    out = np.empty((len(BANDS),) + shape, np.float32)
    with open_product(folder) as product:
        sza = solar_zenith(product, shape)
        det = detector_index(product, shape)
        e0 = {band: solar_irradiance(product, band) for band in REFLECTIVE}
        for b, band in enumerate(REFLECTIVE):
            out[b] = reflectance(product, band, sza, detectors=det)
        for k, band in enumerate(THERMAL):
            with product.open_dataset(f"{band}_BT_in.nc", [f"{band}_BT_in"]) as ds:
                bt = np.asarray(ds[f"{band}_BT_in"].values, np.float32)
            assert bt.shape == (shape[0] // 2, shape[1] // 2)
            out[len(REFLECTIVE) + k] = bt.repeat(2, axis=0).repeat(2, axis=1)
    return out, sza, {"det": det, "e0": e0}


@pytest.mark.parametrize("scene", ["polar", "subtropical"])
def test_reader_recovers_the_nine_true_bands(scene: str, request: pytest.FixtureRequest) -> None:
    folder, truth = request.getfixturevalue(scene)
    bands, sza, cal = _read_bands(folder, truth.sza.shape)
    np.testing.assert_array_equal(sza, truth.sza)  # the reader's interpolation, bit for bit
    ok = ~truth.unfilled
    for b, band in enumerate(BANDS):
        assert np.isnan(bands[b][truth.unfilled]).all() and np.isnan(truth.bands[b][truth.unfilled]).all(), band
        assert np.isfinite(bands[b][ok]).all(), band
        if band in REFLECTIVE:
            # half a count of radiance, in reflectance (the reader uses the same angle and E0)
            count = RADIANCE_SCALE[band] * np.pi * ADJUSTMENT_FACTORS[band] / (
                cal["e0"][band][cal["det"]] * np.cos(np.deg2rad(truth.sza.astype(np.float64))))
            err = np.abs(bands[b].astype(np.float64) - truth.bands[b])
            assert np.all(err[ok] <= 0.5 * count[ok] * (1 + 1e-5) + 1e-6), (band, float(np.max(err[ok] / count[ok])))
        else:
            np.testing.assert_allclose(bands[b][ok], truth.bands[b][ok], atol=0.0051, rtol=0, err_msg=band)


def test_reader_recovers_the_four_angles(polar: tuple[Path, SceneTruth]) -> None:
    folder, truth = polar
    with open_product(folder) as product:
        with product.open_dataset("flags_an.nc") as ds:
            im_offset, im_res = grid_attrs(ds.attrs, "flags_an.nc")
        with product.open_dataset(GEOMETRY_FILE) as ds:
            tn_offset, tn_res = grid_attrs(ds.attrs, GEOMETRY_FILE)
            ties = {name: np.asarray(ds[name].values, np.float64) for name in
                    ("solar_azimuth_tn", "sat_zenith_tn", "sat_azimuth_tn")}
            assert all(ds[name].attrs["units"] == "degrees" for name in ties)
    for name, expected in (("solar_azimuth_tn", truth.solar_azimuth), ("sat_zenith_tn", truth.view_zenith),
                           ("sat_azimuth_tn", truth.view_azimuth)):
        got = tie_to_image(ties[name], truth.sza.shape, tn_offset=tn_offset, tn_res=tn_res, im_offset=im_offset,
                           im_res=im_res)
        np.testing.assert_array_equal(got, expected, err_msg=name)


def test_geometry_of_a_descending_morning_pass(polar: tuple[Path, SceneTruth]) -> None:
    folder, truth = polar
    with open_product(folder) as product, product.open_dataset("flags_an.nc") as ds:
        nadir = int(ds.attrs["track_offset"])
    vza = truth.view_zenith[ROWS // 2]
    assert vza[nadir] == 0.0 and vza.argmin() == nadir  # nadir at the track offset
    assert np.all(np.diff(vza[nadir:]) > 0) and np.all(np.diff(vza[:nadir]) < 0)
    # 100 km west of nadir, on a sphere (R 6371 km) seen from 814.5 km
    gamma = 100.0 / 6371.0
    alpha = np.arctan2(6371.0 * np.sin(gamma), 6371.0 + 814.5 - 6371.0 * np.cos(gamma))
    assert vza[nadir - 200] == pytest.approx(np.degrees(alpha + gamma), abs=0.05)
    # the satellite is east of pixels west of the track and west of pixels east of it (rows run south)
    np.testing.assert_allclose(truth.view_azimuth[:, :nadir - 32], 90.0, atol=1e-3)
    np.testing.assert_allclose(truth.view_azimuth[:, nadir + 32:], 270.0, atol=1e-3)
    # mid-morning: the sun in the south-east half of the sky, up; zenith changes slowly (no fixed gradient)
    assert np.all((truth.solar_azimuth > 90.0) & (truth.solar_azimuth < 180.0))
    assert truth.sza.max() < 85.0 and truth.sza.max() - truth.sza.min() < 5.0


def test_flags_agree_with_the_surface_classes(polar: tuple[Path, SceneTruth]) -> None:
    folder, truth = polar
    with open_product(folder) as product:
        masks = scene_masks(product)
    classes = truth.classes
    for cls in (SEA, SEA_ICE, FOREST, GRASSLAND, SNOW):
        assert (classes == cls).sum() > 100, SURFACE_CLASSES[cls]
    land = np.isin(classes, (FOREST, GRASSLAND, SOIL, DESERT, SNOW))
    np.testing.assert_array_equal(masks.flag("land"), land)
    np.testing.assert_array_equal(masks.flag("ocean"), ~land)
    np.testing.assert_array_equal(masks.flag("snow"), (classes == SNOW) | (classes == SEA_ICE))
    np.testing.assert_array_equal(masks.flag("land"), truth.land)
    np.testing.assert_array_equal(masks.flag("snow"), truth.snow)
    np.testing.assert_array_equal(masks.cloud, truth.cloud & ~truth.unfilled)
    np.testing.assert_array_equal(masks.flag("sun_glint"), truth.sun_glint)
    assert not (masks.flag("sun_glint") & land).any()
    assert masks.flag("day").all() and not masks.flag("twilight").any()


def test_summary_cloud_is_thick_cloud_and_thin_edges_stay_unflagged(polar: tuple[Path, SceneTruth]) -> None:
    _, truth = polar
    np.testing.assert_array_equal(truth.cloud, truth.tau > truth.tau_flag)
    assert truth.cloud.mean() == pytest.approx(0.3, abs=0.005)  # cloud_cover: the flagged fraction
    assert 0.3 < truth.tau_flag < 5.0
    thin = (truth.tau > 0) & ~truth.cloud
    assert 0.01 * truth.cloud.sum() < thin.sum() < 0.5 * truth.cloud.sum()
    # thin cloud changes the surface, but less than the flagged cloud does
    lift = truth.bands[S3] - truth.surface[S3]
    dark = ~truth.snow
    assert np.nanmedian(lift[thin & dark]) > 0.01
    assert np.nanmedian(lift[thin & dark]) < 0.5 * np.nanmedian(lift[truth.cloud & dark])
    assert (truth.top_height_km[truth.tau > 0] >= 0.5).all() and (truth.top_height_km[truth.tau == 0] == 0).all()


def test_snow_and_ice_bright_in_s3_dark_in_s5_clouds_bright_in_both(polar: tuple[Path, SceneTruth]) -> None:
    folder, truth = polar
    bands, _, _ = _read_bands(folder, truth.sza.shape)
    clear = (truth.tau == 0) & ~truth.shadow & ~truth.unfilled
    for cls in (SNOW, SEA_ICE):
        px = clear & (truth.classes == cls)
        assert px.sum() > 100
        assert np.median(bands[S3][px]) > 0.55, SURFACE_CLASSES[cls]
        assert 0.04 < np.median(bands[S5][px]) < 0.1, SURFACE_CLASSES[cls]
        assert np.median(bands[S8][px]) < 270.0, SURFACE_CLASSES[cls]
    thick = truth.cloud & (truth.tau > 10) & ~truth.unfilled
    assert thick.sum() > 100
    assert np.median(bands[S3][thick]) > 0.5
    assert np.median(bands[S5][thick]) > 0.3  # water cloud reflects at 1.6 um; snow absorbs
    snow = clear & (truth.classes == SNOW)
    assert np.median(bands[S5][thick] / bands[S3][thick]) > 3 * np.median(bands[S5][snow] / bands[S3][snow])


def test_land_class_spectra(subtropical: tuple[Path, SceneTruth]) -> None:
    _, truth = subtropical
    clear = (truth.tau == 0) & ~truth.shadow & ~truth.unfilled
    med = {}
    for cls in (SEA, FOREST, GRASSLAND, SOIL, DESERT):
        px = clear & (truth.classes == cls)
        assert px.sum() > 100, SURFACE_CLASSES[cls]
        med[cls] = np.median(truth.bands[:, px], axis=1)
    s1, s2, s3, s5, s6, s8 = (BANDS.index(b) for b in ("S1", "S2", "S3", "S5", "S6", "S8"))
    # vegetation: dark red, bright near infrared
    for cls in (FOREST, GRASSLAND):
        assert med[cls][s2] < 0.1 and med[cls][s3] / med[cls][s2] > 3
    # desert: bright, rising into S5/S6; brighter than soil
    assert med[DESERT][s1] < med[DESERT][s2] < med[DESERT][s3] < med[DESERT][s5]
    assert med[DESERT][s6] > 0.35 and med[DESERT][s3] > med[SOIL][s3]
    # sea: dark, darkest in the infrared
    assert med[SEA][s1] < 0.1 and med[SEA][s3] < 0.05 and med[SEA][s6] < 0.02
    # by day land is warmer than the sea, bare ground warmest
    assert med[SEA][s8] + 1 < med[FOREST][s8] < med[SOIL][s8] < med[DESERT][s8]
    # texture inside each class
    for cls in (FOREST, DESERT):
        px = clear & (truth.classes == cls)
        cv = np.std(truth.bands[s3][px]) / np.mean(truth.bands[s3][px])
        assert 0.03 < cv < 0.3, SURFACE_CLASSES[cls]


@pytest.mark.parametrize("scene", ["polar", "subtropical"])
def test_clouds_brighter_and_colder_than_the_surface_below(scene: str, request: pytest.FixtureRequest) -> None:
    _, truth = request.getfixturevalue(scene)
    flagged = truth.cloud & ~truth.unfilled & ~truth.snow  # over snow a low cloud can be warmer: the hard case
    assert flagged.sum() > 1000
    colder = truth.bands[S8][flagged] < truth.surface[S8][flagged]
    brighter = truth.bands[S3][flagged] > truth.surface[S3][flagged]
    assert colder.mean() > 0.95 and brighter.mean() > 0.99
    assert np.median(truth.surface[S8][flagged] - truth.bands[S8][flagged]) > 5.0


def _clear_1km(truth: SceneTruth) -> np.ndarray:
    """Pixels whose 1 km pixel (2 x 2 block) has no cloud at all: the thermal bands there are the surface's."""
    cloud = (truth.tau > 0).reshape(ROWS // 2, 2, COLS // 2, 2).any(axis=(1, 3))
    return ~cloud.repeat(2, axis=0).repeat(2, axis=1)


def test_outside_cloud_and_shadow_the_surface_is_untouched(polar: tuple[Path, SceneTruth]) -> None:
    _, truth = polar
    untouched = (truth.tau == 0) & ~truth.shadow & ~truth.unfilled
    for b in range(len(REFLECTIVE)):
        np.testing.assert_array_equal(truth.bands[b][untouched], truth.surface[b][untouched])
    # S7-S9 are 1 km pixels: a clear 500 m pixel next to a cloud shares its 1 km value
    untouched_1km = _clear_1km(truth) & ~truth.unfilled
    for b in range(len(REFLECTIVE), len(BANDS)):
        np.testing.assert_array_equal(truth.bands[b][untouched_1km], truth.surface[b][untouched_1km])
    assert (untouched & ~untouched_1km).any()


def test_shadows_darken_the_ground_down_sun(polar: tuple[Path, SceneTruth]) -> None:
    _, truth = polar
    shadow = truth.shadow & ~truth.unfilled
    assert shadow.sum() > 50 and not (shadow & (truth.tau > 0)).any()
    assert np.all(truth.bands[S3][shadow] < truth.surface[S3][shadow])
    shadow_1km = shadow & _clear_1km(truth)
    assert shadow_1km.sum() > 50
    np.testing.assert_array_equal(truth.bands[S8][shadow_1km], truth.surface[S8][shadow_1km])  # no cooling
    # the shadow lies where the cloud is moved by h (tan vza u(vaa) - tan sza u(saa)): mostly a cloud there
    r, c = ROWS // 2, COLS // 2
    g = Geometry(float(truth.sza[r, c]), float(truth.solar_azimuth[r, c]), float(truth.view_zenith[r, c]),
                 float(truth.view_azimuth[r, c]))
    dr, dc = shadow_shift_per_km(g, AN_RES, HEADING_DEG)
    assert dr < 0 and dc < 0  # the sun in the south-east, rows running south: shadows fall north-west
    rows, cols = np.nonzero(truth.tau > 0)
    h = truth.top_height_km[rows, cols]
    tr, tc = rows + np.rint(h * dr).astype(int), cols + np.rint(h * dc).astype(int)
    inside = (tr >= 0) & (tr < ROWS) & (tc >= 0) & (tc < COLS)
    hit = np.zeros_like(shadow)
    hit[tr[inside], tc[inside]] = True
    hit = binary_dilation(hit)  # each block is rendered with its own angles: +-1 px
    assert hit[shadow].mean() > 0.95


def test_sun_glint_flagged_where_the_geometry_says(tmp_path: Path) -> None:
    # a wide ocean scene with the sun high: east of nadir the sensor looks into the specular direction
    folder, truth = simulate_product(tmp_path, seed=5, rows=64, cols=1024, cloud_cover=0.0, land_fraction=0.0,
                                     sza_range=(22.0, 26.0), latitude=10.0, return_truth=True)
    ts, tv = np.radians(truth.sza.astype(np.float64)), np.radians(truth.view_zenith.astype(np.float64))
    rel = np.radians(truth.solar_azimuth.astype(np.float64) - truth.view_azimuth)
    # angle between the view direction and the sun's mirror image in a flat sea
    glint_angle = np.degrees(np.arccos(np.clip(np.cos(ts) * np.cos(tv) - np.sin(ts) * np.sin(tv) * np.cos(rel), -1, 1)))
    with open_product(folder) as product:
        flagged = scene_masks(product).flag("sun_glint")
    sea = (truth.classes == SEA) & ~truth.unfilled
    assert flagged.sum() > 1000 and not flagged[glint_angle > 40].any()
    assert flagged[sea & (glint_angle < 12)].all()
    # the flag is where the sea is bright: glint adds up to tenths of reflectance
    s3 = truth.surface[S3]
    assert np.median(s3[flagged & sea]) > np.median(s3[~flagged & sea]) + GLINT_FLAG_REFLECTANCE
    assert np.max(s3[sea]) > 0.1
    # ... and warm in S7 (reflected sunlight at 3.7 um)
    s7 = truth.surface[BANDS.index("S7")]
    assert np.median(s7[flagged & sea]) > np.median(s7[~flagged & sea]) + 2.0


def test_cover_extremes_and_night(tmp_path: Path) -> None:
    _, clear = simulate_product(tmp_path / "a", seed=1, rows=48, cols=96, cloud_cover=0.0, return_truth=True)
    assert not clear.cloud.any() and not (clear.tau > 0).any() and not clear.shadow.any()
    _, full = simulate_product(tmp_path / "b", seed=1, rows=48, cols=96, cloud_cover=1.0, return_truth=True)
    assert full.cloud.mean() > 0.99
    folder, night = simulate_product(tmp_path / "c", seed=1, rows=48, cols=96, sza_range=(95.0, 110.0),
                                     return_truth=True)
    assert np.isnan(night.bands[:6]).all()  # no reflectance without the sun
    assert np.isfinite(night.bands[6:][:, ~night.unfilled]).all()  # thermal bands at night
    bands, _, _ = _read_bands(folder, night.sza.shape)
    assert np.isnan(bands[:6]).all()
    np.testing.assert_allclose(bands[6:][:, ~night.unfilled], night.bands[6:][:, ~night.unfilled], atol=0.0051)


def test_bad_arguments_rejected(tmp_path: Path) -> None:
    for kwargs, match in (({"cloud_cover": 1.5}, "cloud_cover"), ({"land_fraction": -0.1}, "land_fraction"),
                          ({"latitude": 85.0}, "latitude"), ({"sza_range": (30.0, float("nan"))}, "sza_range"),
                          ({"sza_range": (30.0,)}, "sza_range")):
        with pytest.raises(ValueError, match=match):
            simulate_product(tmp_path, rows=48, cols=96, **kwargs)
    assert not any(tmp_path.iterdir())


def test_a_small_product_is_quick(tmp_path: Path) -> None:
    """Sanity, not a benchmark: the tests simulate many 240 x 320 products (~0.2 s each on one core)."""
    simulate_product(tmp_path / "warm", seed=2, rows=ROWS, cols=COLS)
    t0 = time.perf_counter()
    simulate_product(tmp_path / "timed", seed=3, rows=ROWS, cols=COLS)
    assert time.perf_counter() - t0 < 3.0
