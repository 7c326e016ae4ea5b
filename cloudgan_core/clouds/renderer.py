r"""Render a cloud (tau, top height) over a clear SLSTR surface tile in all nine bands.

For every pixel with tau > 0 (:mod:`.optics` has the equations and references):

- S1-S6: R = T_wv r(tau_v) + t(tau_v)^2 A / (1 - r(tau_v) A), A the surface reflectance, tau_v the
  thickness scaled to the tile's sun-view geometry, T_wv the water-vapour transmittance above the
  cloud top (S4 only);
- S7-S9: L = (1 - eps) B(T_s) + eps B(T_top), eps = 1 - exp(-k_b tau / mu),
  T_top = max(T_ref - Gamma h, T_tropopause), T_ref the median S8 of the surface tile (on every
  4th row and column) or given, then BT = B^-1(L) (exact inverse Planck).

Then the cloud's shadow (:mod:`.shadows`) darkens the reflective bands of the clear pixels it
falls on. Pixels with tau = 0 outside the shadow are copied from the surface, never recomputed,
so they are bit-identical to it; only cloud and shadow pixels are written.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cloudgan_core.clouds.bands import (BANDS, REFLECTIVE, THERMAL, THERMAL_RANGE_K, CloudModelError, Geometry,
                                        as_bands, check_range)
from cloudgan_core.clouds.optics import (DEFAULT_OPTICS, CloudOptics, brightness_temperature, effective_thickness,
                                         emissivity, layer, planck_radiance, water_vapour_transmittance)
from cloudgan_core.clouds.shadows import MIN_DARKENING, project_shadow, shadow_factor
from cloudgan_core.clouds.thickness import CloudField
from cloudgan_core.slstr import radiance

_S3, _S8 = BANDS.index("S3"), BANDS.index("S8")


@dataclass(frozen=True)
class RenderedClouds:
    """A cloudy tile and what a compositor needs to go with it.

    Attributes
    ----------
    bands
        float32 (9, H, W) in :data:`~.bands.BANDS` order: S1-S6 reflectance, S7-S9 brightness
        temperature in K.
    cloud
        bool (H, W): tau > 0.
    shadow
        bool (H, W): clear pixels the cloud's shadow darkens (disjoint from ``cloud``).
    opacity
        float32 (H, W): 1 - t(tau_v)^2 in S3, the fraction of the surface signal the cloud hides;
        0 exactly where tau = 0.
    shadow_transmittance
        float32 (H, W): T_sh, the shading cloud's sun transmittance (1 where nothing shades).
    top_temperature_k
        float32 (H, W): cloud-top temperature in K where ``cloud``, NaN elsewhere.
    """

    bands: np.ndarray
    cloud: np.ndarray
    shadow: np.ndarray
    opacity: np.ndarray
    shadow_transmittance: np.ndarray
    top_temperature_k: np.ndarray


def render(surface: np.ndarray, clouds: CloudField, geometry: Geometry, *, optics: CloudOptics = DEFAULT_OPTICS,
           surface_temperature_k: float | None = None, shadows: bool = True, pixel_size_m: float = 500.0,
           heading_deg: float = 180.0, min_darkening: float = MIN_DARKENING) -> RenderedClouds:
    """Lay ``clouds`` over a clear ``surface`` tile.

    Parameters
    ----------
    surface
        (9, H, W) clear-sky tile in :data:`~.bands.BANDS` order (S1-S6 reflectance, S7-S9 K);
        finite, brightness temperatures within 100-400 K; read as float32.
    clouds
        The cloud's optical thickness and top height, on the same (H, W) grid.
    geometry
        Sun and view angles of the tile.
    optics
        Optical constants of the model.
    surface_temperature_k
        T_ref, K, from which the cloud-top temperature falls with the lapse rate; default: the
        median S8 brightness temperature of ``surface`` (taken on every 4th row and column).
    shadows
        Cast the cloud's shadow (:func:`~.shadows.cast_shadow`); False leaves clear pixels alone.
    pixel_size_m, heading_deg, min_darkening
        Passed to :func:`~.shadows.cast_shadow`.

    Returns
    -------
    RenderedClouds
    """
    surf = as_bands(surface)
    if not isinstance(clouds, CloudField):
        raise CloudModelError(f"clouds must be a CloudField, got {type(clouds).__name__}")
    shape = surf.shape[1:]
    if clouds.tau.shape != shape:
        raise CloudModelError(f"cloud field is {clouds.tau.shape} but the surface tile is {shape}")
    out = surf.copy()
    flat_out, flat_surf = out.reshape(len(BANDS), -1), surf.reshape(len(BANDS), -1)
    cloud = clouds.tau > 0
    idx = np.flatnonzero(cloud)
    opacity = np.zeros(shape, np.float32)
    top_temperature = np.full(shape, np.nan, np.float32)

    if shadows:
        shade = project_shadow(clouds.tau, clouds.top_height_km, geometry, pixel_size_m, heading_deg=heading_deg,
                               min_darkening=min_darkening, optics=optics)
        shadow_t, shadow = shade.transmittance, shade.mask
        sidx = np.flatnonzero(shadow)
        t_sh = np.take(shadow_t.reshape(-1), sidx)
        for b, band in enumerate(REFLECTIVE):
            flat_out[b][sidx] = np.take(flat_surf[b], sidx) * shadow_factor(t_sh, band, optics)
    else:
        shadow_t, shadow = np.ones(shape, np.float32), np.zeros(shape, bool)

    if idx.size:
        tau = np.take(clouds.tau.reshape(-1), idx)
        height = clouds.top_height_km if isinstance(clouds.top_height_km, float) \
            else np.take(clouds.top_height_km.reshape(-1), idx)
        t2_s3 = _reflective(flat_out, flat_surf, idx, tau, height, geometry, optics)
        opacity.reshape(-1)[idx] = np.float32(1.0) - t2_s3
        t_top = _thermal(flat_out, flat_surf, idx, tau, height, geometry, optics, surface_temperature_k, surf[_S8])
        top_temperature.reshape(-1)[idx] = t_top
    return RenderedClouds(out, cloud, shadow, opacity, shadow_t, top_temperature)


def _reflective(flat_out: np.ndarray, flat_surf: np.ndarray, idx: np.ndarray, tau: np.ndarray,
                height: float | np.ndarray, geometry: Geometry, optics: CloudOptics) -> np.ndarray:
    """R = T_wv r + t^2 A / (1 - r A) on the cloudy pixels ``idx`` of S1-S6, in place; returns t^2 of S3."""
    tau_v = effective_thickness(tau, geometry.mu0, geometry.mu)
    cache: dict[float, tuple[np.ndarray, np.ndarray]] = {}
    for b, band in enumerate(REFLECTIVE):
        co_albedo = optics.co_albedo[b]
        if co_albedo not in cache:  # bands with the same co-albedo share r and t
            r, t = layer(tau_v, band, optics)
            cache[co_albedo] = (r, t * t)
        r, t2 = cache[co_albedo]
        a = np.take(flat_surf[b], idx)
        value = t2 * a
        value /= np.float32(1.0) - r * a
        if band == "S4":
            t_wv = water_vapour_transmittance(height, geometry, optics)
            value += r * (np.float32(t_wv) if isinstance(t_wv, float) else t_wv)
        else:
            value += r
        flat_out[b][idx] = value
    return cache[optics.co_albedo[REFLECTIVE.index("S3")]][1]


def _thermal(flat_out: np.ndarray, flat_surf: np.ndarray, idx: np.ndarray, tau: np.ndarray,
             height: float | np.ndarray, geometry: Geometry, optics: CloudOptics,
             surface_temperature_k: float | None, surface_s8: np.ndarray) -> np.ndarray:
    """BT = B^-1((1 - eps) B(T_s) + eps B(T_top)) on the cloudy pixels of S7-S9, in place; returns T_top."""
    if surface_temperature_k is None:
        t_ref = float(np.median(surface_s8[::4, ::4]))  # every 16th pixel: the median to ~0.1 K, 16x faster
    else:
        t_ref = check_range("surface_temperature_k", surface_temperature_k, *THERMAL_RANGE_K, " K")
    t_top = np.maximum(np.float32(t_ref) - np.float32(optics.lapse_rate_k_per_km) * np.asarray(height, np.float32),
                       np.float32(optics.tropopause_k))
    for band in THERMAL:
        b = BANDS.index(band)
        eps = emissivity(tau, band, geometry, optics)
        b_surf = planck_radiance(np.take(flat_surf[b], idx), band)
        b_top = planck_radiance(t_top, band)
        b_surf += eps * (b_top - b_surf)
        flat_out[b][idx] = brightness_temperature(b_surf, band)
    return t_top


def false_color(bands: np.ndarray) -> np.ndarray:
    """The project's false colour of a (9, H, W) band stack: R=(S3+S5)/2, G=S3, B=(S3+S1)/2, uint8 (H, W, 3).

    Calls :func:`cloudgan_core.slstr.radiance.false_color` on S1, S3 and S5.
    """
    arr = np.asarray(bands)
    if arr.ndim != 3 or arr.shape[0] != len(BANDS):
        raise CloudModelError(f"bands must be (9, H, W) in the band order {', '.join(BANDS)}; got shape {arr.shape}")
    return radiance.false_color(arr[BANDS.index("S1")], arr[_S3], arr[BANDS.index("S5")])
