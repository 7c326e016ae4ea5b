"""The physical cloud model: thickness fields, the nine-band renderer, shadows, the GAN inversion."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import constants
from scipy.ndimage import distance_transform_edt

from cloudgan_core.clouds import (BANDS, REFLECTIVE, THERMAL, WAVELENGTH_UM, CloudField, CloudModelError, CloudOptics,
                                  Geometry, ProceduralClouds, asymptotic_reflectance, brightness_temperature,
                                  cast_shadow, edge_taper, false_color, fractal_field, planck_radiance,
                                  procedural_thickness, render, shadow_shift_per_km, thickness_from_reflectance,
                                  toa_reflectance, water_vapour_transmittance)
from cloudgan_core.clouds.optics import layer
from cloudgan_core.errors import CloudGANError

GEOMETRY = Geometry(solar_zenith=40.0, solar_azimuth=140.0, view_zenith=20.0, view_azimuth=100.0)
OCEAN = (0.065, 0.045, 0.025, 0.012, 0.008, 0.005, 292.0, 290.0, 289.0)
SNOW = (0.92, 0.90, 0.85, 0.30, 0.07, 0.04, 265.0, 263.0, 262.5)


def surface_of(values: tuple[float, ...], shape: tuple[int, int] = (64, 64)) -> np.ndarray:
    return np.broadcast_to(np.asarray(values, np.float32)[:, None, None], (9, *shape)).copy()


def random_surface(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    surface = np.empty((9, *shape), np.float32)
    surface[:6] = rng.uniform(0.02, 0.5, (6, *shape))
    surface[6:] = rng.uniform(280.0, 300.0, (3, *shape))
    return surface


def fractal_mask(rng: np.random.Generator, shape: tuple[int, int] = (128, 128), cover: float = 0.5) -> np.ndarray:
    field = fractal_field(shape, 3.5, rng)
    return field > np.quantile(field, 1.0 - cover)


def uniform_cloud(tau: float, shape: tuple[int, int] = (64, 64), height: float = 2.0) -> CloudField:
    return CloudField(np.full(shape, tau, np.float32), height)


# ----------------------------------------------------------------------------------- renderer


def test_zero_tau_gives_the_surface_bit_for_bit():
    rng = np.random.default_rng(1)
    surface = random_surface(rng, (48, 40))
    out = render(surface, CloudField(np.zeros((48, 40), np.float32)), GEOMETRY)
    assert out.bands.dtype == np.float32 and out.bands.shape == (9, 48, 40)
    assert out.bands.tobytes() == surface.tobytes()
    assert not out.cloud.any() and not out.shadow.any() and not out.opacity.any()


@pytest.mark.parametrize("albedo", [0.0, 0.3, 0.9])
def test_thick_cloud_tends_to_the_asymptotic_reflectance(albedo):
    mu0, mu = GEOMETRY.mu0, GEOMETRY.mu
    for band in REFLECTIVE:
        r_inf = asymptotic_reflectance(band)
        t_wv = water_vapour_transmittance(2.0, GEOMETRY) if band == "S4" else 1.0
        if band in ("S1", "S2", "S3"):
            assert r_inf == 1.0
            tau = np.float32(1.0e4)
            got = float(toa_reflectance(tau, albedo, band, GEOMETRY))
            # conservative: 1 - R -> (mu0 + mu) / (tau' + mu0 + mu), for every surface
            assert got == pytest.approx(1.0 - (mu0 + mu) / (0.15 * 1.0e4 + mu0 + mu), abs=1e-4)
        else:
            got = float(toa_reflectance(np.float32(300.0), albedo, band, GEOMETRY))
            assert got == pytest.approx(t_wv * r_inf, abs=1e-5)
    # the absorbing bands: darker than S1-S3 but far brighter than snow in S5
    assert asymptotic_reflectance("S5") == pytest.approx(0.60, abs=0.01)
    assert asymptotic_reflectance("S6") == pytest.approx(0.36, abs=0.01)


@pytest.mark.parametrize("band", THERMAL)
def test_opaque_cloud_reads_the_cloud_top_temperature(band):
    surface = surface_of(OCEAN)
    out = render(surface, uniform_cloud(200.0, height=3.0), GEOMETRY)
    t_top = OCEAN[BANDS.index("S8")] - 6.5 * 3.0
    assert np.abs(out.bands[BANDS.index(band)] - t_top).max() < 0.01
    assert np.allclose(out.top_temperature_k, t_top)
    explicit = render(surface, uniform_cloud(200.0, height=3.0), GEOMETRY, surface_temperature_k=300.0)
    assert np.abs(explicit.bands[BANDS.index(band)] - (300.0 - 19.5)).max() < 0.01
    high = render(surface, uniform_cloud(200.0, height=20.0), GEOMETRY)  # 292 - 130 K: below the tropopause floor
    assert np.abs(high.bands[BANDS.index(band)] - 190.0).max() < 0.01


def test_planck_round_trip_and_value():
    for band in THERMAL:
        temps = np.linspace(180.0, 340.0, 161, dtype=np.float32)
        assert np.abs(brightness_temperature(planck_radiance(temps, band), band) - temps).max() < 2e-3
        lam = WAVELENGTH_UM[band] * 1e-6  # independent constants: SI units, per metre -> per um
        expected = 2 * constants.h * constants.c**2 / lam**5 / math.expm1(
            constants.h * constants.c / (lam * constants.k * 290.0)) * 1e-6
        assert float(planck_radiance(np.float32(290.0), band)) == pytest.approx(expected, rel=1e-5)


def test_reflectance_rises_with_tau_and_with_albedo():
    taus = np.logspace(-2, 2.5, 80).astype(np.float32)
    for sza, vza in [(0.0, 0.0), (40.0, 20.0), (70.0, 55.0), (85.0, 0.0)]:
        geometry = Geometry(sza, 150.0, vza, 280.0)
        for band in REFLECTIVE:
            # any surface darker than the cloud's own asymptote (brighter ones are darkened, see below);
            # in S4 the vapour dims the cloud but not the (already dim) surface tile, so R rises from
            # tau = 0 only while A < T_wv R_inf / (1 + R_inf^2) (the sign of dR/dtau at tau = 0)
            r_inf = asymptotic_reflectance(band)
            ceiling = r_inf
            if band == "S4":
                ceiling = water_vapour_transmittance(2.0, geometry) * r_inf
            for albedo in np.linspace(0.0, 0.95 * (ceiling / (1 + r_inf**2) if band == "S4" else ceiling), 8):
                r = toa_reflectance(taus, albedo, band, geometry)
                rising = np.diff(r)
                assert (rising >= -2e-7).all(), (band, sza, vza, albedo)  # float32 rounding once saturated
                assert (rising[r[1:] < 0.99 * ceiling] > 0).all(), (band, sza, vza, albedo)
                assert r.max() <= ceiling * (1 + 1e-6)
            for tau in (0.5, 5.0, 50.0):
                r = toa_reflectance(np.full(20, tau, np.float32), np.linspace(0, 1, 20), band, geometry)
                rising = np.diff(r)
                assert (rising >= 0).all(), (band, sza, vza, tau)
                if tau < 50:  # at tau = 50 the surface no longer shows in S6 at slant geometry
                    assert (rising > 0).all(), (band, sza, vza, tau)
    # a conservative cloud over a white surface is white: energy is conserved
    assert np.allclose(toa_reflectance(taus, 1.0, "S3", GEOMETRY), 1.0, atol=1e-6)
    # an absorbing cloud darkens a surface brighter than its asymptote (snow-like S6 surface)
    assert (np.diff(toa_reflectance(taus, 0.6, "S6", GEOMETRY)) <= 2e-7).all()


def test_conservative_limit_is_continuous():
    tau = np.logspace(-2, 2, 50).astype(np.float32)
    near = CloudOptics(co_albedo=(1e-5,) * 6)
    r0, t0 = layer(tau, "S3")
    r1, t1 = layer(tau, "S3", near)
    assert np.abs(r1 - r0).max() < 3e-3 and np.abs(t1 - t0).max() < 3e-3


def test_cloud_is_brighter_and_colder_than_the_ocean():
    surface = surface_of(OCEAN)
    s3, s8 = BANDS.index("S3"), BANDS.index("S8")
    for tau in (1.0, 3.0, 10.0, 60.0):
        out = render(surface, uniform_cloud(tau), GEOMETRY, shadows=False)
        assert (out.bands[s3] > OCEAN[s3] + 0.05).all()
        assert (out.bands[s8] < OCEAN[s8] - 1.0).all()
        assert out.opacity.min() > 0


def test_thick_cloud_is_whiter_than_snow_at_1_6_um():
    s3, s5 = BANDS.index("S3"), BANDS.index("S5")
    for surface in (surface_of(OCEAN), surface_of(SNOW)):
        out = render(surface, uniform_cloud(40.0), GEOMETRY, shadows=False)
        assert (out.bands[s5] / out.bands[s3]).min() > 0.4 > SNOW[s5] / SNOW[s3]


def test_thin_cloud_has_a_positive_split_window_difference():
    surface = surface_of(OCEAN[:6] + (290.0, 290.0, 290.0))
    out = render(surface, uniform_cloud(1.0), GEOMETRY, shadows=False)
    btd = out.bands[BANDS.index("S8")] - out.bands[BANDS.index("S9")]
    assert (btd > 0.1).all()


def test_high_cloud_is_brighter_at_1_375_um():
    low = toa_reflectance(np.float32(20.0), 0.01, "S4", GEOMETRY, top_height_km=1.0)
    high = toa_reflectance(np.float32(20.0), 0.01, "S4", GEOMETRY, top_height_km=9.0)
    assert high > 3 * low and high < toa_reflectance(np.float32(20.0), 0.01, "S5", GEOMETRY)


def test_water_vapour_transmittance_matches_the_documented_figures():
    overhead = Geometry(0.0, 0.0)
    assert water_vapour_transmittance(0.0, overhead) == pytest.approx(0.018, abs=0.001)
    assert water_vapour_transmittance(2.0, overhead) == pytest.approx(0.23, abs=0.005)
    assert water_vapour_transmittance(8.0, overhead) == pytest.approx(0.93, abs=0.005)
    field = water_vapour_transmittance(np.array([[0.0, 2.0, 8.0]], np.float32), overhead)
    assert field.dtype == np.float32 and np.allclose(field, [[0.0183, 0.2293, 0.9293]], atol=1e-3)


def test_false_color_uses_the_project_recipe():
    bands = np.zeros((9, 1, 2), np.float32)
    bands[0], bands[2], bands[4] = 0.2, 0.4, 0.6
    bands[2, 0, 1] = 1.5
    rgb = false_color(bands)
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 2, 3)
    assert rgb[0, 0].tolist() == [128, 102, 76]
    assert rgb[0, 1].tolist() == [255, 255, 217]


# ------------------------------------------------------------------------------ thickness fields


def _spectral_slope(slope: float, seeds: range, n: int = 256) -> float:
    power = np.zeros((n, n))
    for seed in seeds:
        power += np.abs(np.fft.fft2(fractal_field((n, n), slope, np.random.default_rng(seed)))) ** 2
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij"))
    ring = np.rint(k * n).astype(int)
    radii = np.arange(n // 32, n // 2 + 1)  # wavelengths 32 px .. 2 px
    mean_power = np.bincount(ring.ravel(), power.ravel())[radii] / np.bincount(ring.ravel())[radii]
    return -np.polyfit(np.log(radii / n), np.log(mean_power), 1)[0]


@pytest.mark.parametrize("slope", [2.0, 8.0 / 3.0, 3.2])
def test_fractal_field_has_the_requested_spectral_slope(slope):
    assert _spectral_slope(slope, range(4)) == pytest.approx(slope, abs=0.2)


def test_fractal_field_is_standardised_float32():
    field = fractal_field((96, 160), 8 / 3, np.random.default_rng(3))
    assert field.dtype == np.float32 and field.shape == (96, 160)
    assert abs(float(field.mean())) < 1e-5 and float(field.std()) == pytest.approx(1.0, abs=1e-5)


def test_procedural_tau_is_zero_outside_and_visible_inside():
    rng = np.random.default_rng(5)
    mask = fractal_mask(rng)
    config = ProceduralClouds()
    clouds = procedural_thickness(mask.astype(np.uint8), config, rng)
    assert clouds.tau.dtype == np.float32
    assert (clouds.tau[~mask] == 0).all() and (clouds.tau[mask] >= config.min_tau).all()
    assert (clouds.mask == mask).all() and clouds.top_height_km == config.top_height_km
    # every cloudy pixel changes the 8-bit false colour of a dark ocean tile
    surface = surface_of(OCEAN, mask.shape)
    out = render(surface, clouds, GEOMETRY)
    changed = (false_color(out.bands) != false_color(surface)).any(axis=-1)
    assert changed[mask].all()


def test_edge_taper_spares_the_tile_border():
    mask = np.zeros((64, 64), bool)
    mask[:, :32] = True  # the cloud goes on beyond the tile's left, top and bottom edges
    taper = edge_taper(mask, 8.0)
    assert (taper[:, :24] == 1).all() and (taper[:, 32:] == 0).all()
    assert 0 < taper[10, 31] < 0.1 and (np.diff(taper[10, 24:32]) < 0).all()
    assert (edge_taper(np.ones((8, 8), bool), 8.0) == 1).all()


def test_cloud_edges_are_thinner_than_the_core():
    rng = np.random.default_rng(11)
    ys, xs = np.mgrid[:128, :128]
    masks = [fractal_mask(rng, cover=0.6), np.hypot(ys - 64, xs - 64) < 40]
    for mask in masks:
        config = ProceduralClouds()
        clouds = procedural_thickness(mask, config, rng)
        dist = distance_transform_edt(mask)
        ring, core = dist == 1, dist > config.edge_width
        out = render(surface_of(OCEAN, mask.shape), clouds, GEOMETRY, shadows=False)
        assert out.opacity[ring].mean() <= 0.5 * out.opacity[core].mean()
        s3 = BANDS.index("S3")
        excess = (out.bands[s3] - OCEAN[s3]) / (1.0 - OCEAN[s3])  # (R - A) / (R_inf - A)
        assert excess[ring].mean() <= 0.5 * excess[core].mean()


def test_same_seed_same_bytes():
    mask = fractal_mask(np.random.default_rng(0))
    surface = random_surface(np.random.default_rng(1), mask.shape)
    runs = []
    for seed in (42, 42, 43):
        clouds = procedural_thickness(mask, ProceduralClouds(), np.random.default_rng(seed))
        runs.append((clouds.tau.tobytes(), render(surface, clouds, GEOMETRY).bands.tobytes()))
    assert runs[0] == runs[1] and runs[0][0] != runs[2][0]


@pytest.mark.parametrize("band", ["S3", "S1", "S5", "S6", "S4"])
def test_reflectance_inversion_round_trip(band):
    geometry = Geometry(solar_zenith=55.0, solar_azimuth=120.0, view_zenith=30.0, view_azimuth=285.0)
    tau_top = 100.0 if band in ("S1", "S3") else 20.0  # absorbing bands saturate beyond
    tau = np.geomspace(0.05, tau_top, 200).astype(np.float32).reshape(10, 20)
    reflectance = toa_reflectance(tau, 0.0, band, geometry, top_height_km=4.0)
    back = thickness_from_reflectance(reflectance, geometry, band=band, top_height_km=4.0).tau
    assert np.allclose(back, tau, rtol=2e-3)


def test_gan_inversion_keeps_the_8_bit_brightness_and_the_mask():
    dn = np.arange(1, 256, dtype=np.float32).reshape(15, 17)
    mask = np.ones(dn.shape, bool)
    mask[0, :5] = False
    clouds = thickness_from_reflectance(dn / 255.0, GEOMETRY, mask=mask)
    assert (clouds.tau[~mask] == 0).all() and (clouds.tau[mask] >= 0.3).all()
    black = surface_of((0.0,) * 6 + (290.0,) * 3, dn.shape)
    tau = thickness_from_reflectance(dn / 255.0, GEOMETRY).tau
    out = render(black, CloudField(np.where(mask, tau, 0)), GEOMETRY, shadows=False)
    # the brightest cloud the model makes at tau_max = 100 (0.90 here); brighter GAN pixels saturate
    top_dn = math.floor(255 * float(toa_reflectance(np.float32(100.0), 0.0, "S3", GEOMETRY)) + 0.5)
    assert 200 < top_dn < 255
    kept = mask & (dn <= top_dn)
    assert (false_color(out.bands)[..., 1][kept] == dn[kept]).all()
    assert (tau[dn > top_dn] == 100.0).all()
    # at or beyond the cloud's asymptotic reflectance: tau_max
    saturated = thickness_from_reflectance(np.array([[1.0, 1.2, 0.0, -0.1]]), GEOMETRY, tau_max=80.0).tau
    assert saturated.tolist() == [[80.0, 80.0, 0.0, 0.0]]


# ------------------------------------------------------------------------------------- shadows


@pytest.mark.parametrize(("solar_azimuth", "expected"), [(90.0, (0, -7)), (180.0, (-7, 0)), (270.0, (0, 7)),
                                                         (0.0, (7, 0)), (135.0, (-5, -5))])
def test_shadow_falls_anti_solar_at_the_geometric_distance(solar_azimuth, expected):
    tau = np.zeros((64, 64), np.float32)
    tau[28:34, 28:34] = 20.0
    geometry = Geometry(solar_zenith=60.0, solar_azimuth=solar_azimuth, view_zenith=0.0)
    per_km = shadow_shift_per_km(geometry, 500.0)
    assert math.hypot(*per_km) * 2.0 == pytest.approx(2000.0 * math.tan(math.radians(60.0)) / 500.0)  # 6.93 px
    shade = cast_shadow(tau, 2.0, geometry, pixel_size_m=500)
    rows, cols = np.nonzero(shade.transmittance < 1)
    assert (rows.min() - 28, cols.min() - 28) == expected and (rows.max() - 33, cols.max() - 33) == expected
    assert shade.mask.tolist() == ((shade.transmittance < 1) & (tau == 0)).tolist()


def test_view_parallax_moves_the_shadow_away_from_the_satellite_side():
    # satellite to the west sees the cloud displaced east; sun in the east casts the shadow west
    geometry = Geometry(solar_zenith=60.0, solar_azimuth=90.0, view_zenith=30.0, view_azimuth=270.0)
    d_row, d_col = shadow_shift_per_km(geometry, 500.0)
    assert d_row == pytest.approx(0.0, abs=1e-12)
    assert d_col * 2.0 == pytest.approx(-(math.tan(math.radians(30)) + math.tan(math.radians(60))) * 4.0)
    # same side, same zenith: the shadow hides behind the cloud
    assert shadow_shift_per_km(Geometry(45.0, 120.0, 45.0, 120.0)) == pytest.approx((0.0, 0.0), abs=1e-12)
    # rows pointing north instead of south flip the row offset
    south = shadow_shift_per_km(Geometry(60.0, 180.0), heading_deg=180.0)
    north = shadow_shift_per_km(Geometry(60.0, 180.0), heading_deg=0.0)
    assert north[0] == pytest.approx(-south[0]) and north[1] == pytest.approx(-south[1], abs=1e-12)


def test_height_field_casts_the_same_shadow_as_a_constant_height():
    rng = np.random.default_rng(9)
    clouds = procedural_thickness(fractal_mask(rng, (96, 96)), ProceduralClouds(), rng)
    geometry = Geometry(50.0, 210.0, 25.0, 80.0)
    scalar = cast_shadow(clouds.tau, 3.0, geometry)
    field = cast_shadow(clouds.tau, np.full(clouds.tau.shape, 3.0, np.float32), geometry)
    assert scalar.transmittance.tobytes() == field.transmittance.tobytes()
    assert (scalar.mask == field.mask).all() and scalar.mask.any()


def test_only_cloud_and_shadow_pixels_change():
    rng = np.random.default_rng(21)
    mask = fractal_mask(rng, (128, 128), cover=0.3)
    surface = random_surface(rng, mask.shape)
    clouds = procedural_thickness(mask, ProceduralClouds(top_height_km=3.0), rng)
    for geometry in (GEOMETRY, Geometry(70.0, 300.0, 50.0, 260.0)):
        out = render(surface, clouds, geometry)
        assert out.shadow.any() and not (out.shadow & out.cloud).any()
        clear = ~(out.cloud | out.shadow)
        assert out.bands[:, clear].tobytes() == surface[:, clear].tobytes()
        changed = (out.bands != surface).any(axis=0)
        assert (changed == (out.cloud | out.shadow)).all()
        # shadows darken the reflective bands only, by d + (1 - d) T at most
        s = out.shadow
        assert (out.bands[:6, s] < surface[:6, s]).all() and (out.bands[6:, s] == surface[6:, s]).all()
        assert (out.bands[:6, s] >= 0.2 * surface[:6, s] * np.array([1, .75, .5, .25, .25, .2])[:, None]).all()
        assert (out.opacity[clear] == 0).all() and np.isnan(out.top_temperature_k[clear]).all()
    # a high threshold leaves faint shade out of the mask: those pixels must then stay untouched too
    out = render(surface, clouds, GEOMETRY, min_darkening=0.3)
    faint = (out.shadow_transmittance < 1) & ~out.cloud & ~out.shadow
    assert faint.any() and out.shadow.any()
    assert ((out.bands != surface).any(axis=0) == (out.cloud | out.shadow)).all()


# ---------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("make", "words"), [
    (lambda: ProceduralClouds(mean_tau=-1.0), "mean_tau"),
    (lambda: ProceduralClouds(mean_tau=1.0, min_tau=2.0), "min_tau"),
    (lambda: ProceduralClouds(spectral_slope=float("nan")), "spectral_slope"),
    (lambda: Geometry(solar_zenith=95.0, solar_azimuth=0.0), "solar_zenith"),
    (lambda: Geometry(solar_zenith=30.0, solar_azimuth=float("inf")), "solar_azimuth"),
    (lambda: CloudOptics(co_albedo=(0.0,) * 5), "co_albedo"),
    (lambda: CloudField(np.full((4, 4), np.nan)), "non-finite"),
    (lambda: CloudField(-np.ones((4, 4))), ">= 0"),
    (lambda: CloudField(np.ones((4, 4)), 35.0), "top_height_km"),
    (lambda: procedural_thickness(np.full((8, 8), 255, np.uint8), ProceduralClouds(), np.random.default_rng()),
     "divided by 255"),
    (lambda: procedural_thickness(np.ones((8, 8)), ProceduralClouds(), 42), "Generator"),
    (lambda: fractal_field((10**6, 10**6), 2.0, np.random.default_rng()), "outside"),
    (lambda: thickness_from_reflectance(np.zeros((4, 4), np.uint8), GEOMETRY), "divide by 255"),
    (lambda: render(np.zeros((6, 4, 4)), uniform_cloud(1.0, (4, 4)), GEOMETRY), "(9, H, W)"),
    (lambda: render(surface_of(OCEAN, (4, 4)), uniform_cloud(1.0, (5, 4)), GEOMETRY), "surface tile"),
    (lambda: render(surface_of(OCEAN, (4, 4)), np.ones((4, 4)), GEOMETRY), "CloudField"),
    (lambda: render(surface_of(OCEAN[:6] + (20.0, 290.0, 290.0), (4, 4)), uniform_cloud(1.0, (4, 4)), GEOMETRY),
     "brightness temperatures"),
    (lambda: toa_reflectance(np.ones(3), 0.1, "S8", GEOMETRY), "reflective band"),
])
def test_bad_input_gets_a_clear_error(make, words):
    with pytest.raises(CloudModelError) as info:
        make()
    assert words in str(info.value)
    assert isinstance(info.value, CloudGANError)
