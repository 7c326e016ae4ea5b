r"""Cloud shadows: where a cloud at height h shades the ground, seen from the sensor.

Geometry
--------
Angles follow SLSTR ``geometry_tn``: zenith theta from the vertical, azimuth phi clockwise from
north, pointing from the pixel to the sun (theta_s, phi_s) or to the satellite (theta_v, phi_v).
The image frame is assumed to be a map seen from above: rows run along the track heading psi
(azimuth of increasing row index; default 180 deg = south, the daytime descending pass drawn
north-up) and columns point to psi - 90 deg (east when rows point south). A horizontal
displacement of length L towards azimuth phi is then, in pixels of size p,

    (d_row, d_col) = (L / p) (cos(phi - psi), -sin(phi - psi)) = (L / p) u(phi).

A cloud top at height h above the ground point P appears in the image at P - h tan(theta_v) u(phi_v)
(parallax: displaced away from the satellite) and casts its shadow at P - h tan(theta_s) u(phi_s)
(away from the sun). The cloud mask marks where the cloud appears, so, relative to the mask, the
shadow lies at

    delta = h [tan(theta_v) u(phi_v) - tan(theta_s) u(phi_s)] / p,

rounded to whole pixels (e.g. theta_s = 60 deg, theta_v = 0, h = 2 km, p = 500 m: 6.9 -> 7 px
towards the anti-solar azimuth). Sun and satellite on the same side at the same zenith give
delta = 0: the shadow hides behind the cloud (the hot spot).

Darkening
---------
The shadow transmittance is the shifted cloud's direct + diffuse transmittance of sunlight in S3,
T_sh(x) = T_sun(tau(x - delta)) with T_sun = t(tau mu_bar / mu0) (:mod:`.optics`); with a field of
heights every cloudy pixel casts its own shadow and the darkest one wins. 1 where nothing shades.
The shadowed surface keeps the diffuse skylight fraction d_b of its illumination:

    R'_b = A_b (d_b + (1 - d_b) T_sh)          S1-S6,
    BT'_b = BT_b                               S7-S9 (the surface's cooling in shadow depends
                                               on how long it has been shaded; neglected).

The shadow mask is where (1 - min_b d_b)(1 - T_sh) > delta_min (the most-darkened band loses more
than ``min_darkening`` of its reflectance) and the pixel is not cloud (cloud wins where both).
Exactly those pixels are darkened, so every pixel outside cloud and shadow keeps the surface's
value bit for bit.

Limitations: the cloud is a thin sheet at its top height over flat ground; shadows are tile-local
(a cloud outside the tile casts none into it, a shadow leaving the tile is cut); the S3
transmittance stands for all reflective bands (cloud absorption would make S5/S6 shadows a few %
darker); the shade of one part of a cloud falling beneath another part is ignored (the adding
formula's t^2 already darkens the surface under a cloud).

Reference: Zhu, Z. & Woodcock, C. E. (2012), Object-based cloud and cloud shadow detection in
Landsat imagery, Remote Sens. Environ. 118, 83-94 (shadow projection from sun angles and cloud
height).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cloudgan_core.clouds.bands import REFLECTIVE, Geometry, as_field, check_range
from cloudgan_core.clouds.optics import DEFAULT_OPTICS, CloudOptics, sun_transmittance
from cloudgan_core.clouds.thickness import check_height

#: Default threshold of the shadow mask: the most-darkened band loses more than 1 % of its reflectance.
MIN_DARKENING = 0.01


@dataclass(frozen=True)
class ShadowField:
    """Result of :func:`cast_shadow`.

    Attributes
    ----------
    transmittance
        T_sh, float32 (H, W): the shading cloud's sun transmittance, 1 where nothing shades
        (values under the cloud itself are kept but not applied).
    mask
        bool (H, W): pixels the shadow darkens (never a cloud pixel).
    shift_per_km
        (rows, cols) displacement of the shadow from the cloud mask per km of top height, px.
    """

    transmittance: np.ndarray
    mask: np.ndarray
    shift_per_km: tuple[float, float]


def shadow_shift_per_km(geometry: Geometry, pixel_size_m: float = 500.0,
                        heading_deg: float = 180.0) -> tuple[float, float]:
    """delta / h: the shadow's (rows, cols) offset from the cloud mask per km of cloud-top height, px."""
    pixel_size_m = check_range("pixel_size_m", pixel_size_m, 1.0, 1.0e5, " m")
    psi = math.radians(check_range("heading_deg", heading_deg, -360.0, 360.0, " deg"))
    scale = 1000.0 / pixel_size_m

    def unit(azimuth_deg: float) -> tuple[float, float]:
        a = math.radians(azimuth_deg) - psi
        return math.cos(a), -math.sin(a)

    tv, ts = math.tan(math.radians(geometry.view_zenith)), math.tan(math.radians(geometry.solar_zenith))
    uv, us = unit(geometry.view_azimuth), unit(geometry.solar_azimuth)
    return scale * (tv * uv[0] - ts * us[0]), scale * (tv * uv[1] - ts * us[1])


def _shifted(src: np.ndarray, dr: int, dc: int, fill: float) -> np.ndarray:
    """``src`` moved by (dr, dc) whole pixels; vacated pixels take ``fill`` (no wrap-around)."""
    rows, cols = src.shape
    out = np.full_like(src, fill)
    if abs(dr) < rows and abs(dc) < cols:
        out[max(dr, 0):rows + min(dr, 0), max(dc, 0):cols + min(dc, 0)] = \
            src[max(-dr, 0):rows - max(dr, 0), max(-dc, 0):cols - max(dc, 0)]
    return out


def shadow_factor(transmittance: np.ndarray, band: str, optics: CloudOptics = DEFAULT_OPTICS) -> np.ndarray:
    """d_b + (1 - d_b) T_sh: the factor a shadow multiplies the surface reflectance by in ``band``; float32."""
    d = np.float32(optics.skylight[REFLECTIVE.index(band)])
    return d + (np.float32(1.0) - d) * np.asarray(transmittance, dtype=np.float32)


def cast_shadow(tau: np.ndarray, top_height_km: float | np.ndarray, geometry: Geometry,
                pixel_size_m: float = 500.0, *, heading_deg: float = 180.0,
                min_darkening: float = MIN_DARKENING, optics: CloudOptics = DEFAULT_OPTICS) -> ShadowField:
    """Project a cloud's shadow onto the ground of its tile (module docstring for the model).

    Parameters
    ----------
    tau
        Cloud optical thickness, (H, W), >= 0 (0 = clear).
    top_height_km
        Cloud-top height, km: a scalar, or an (H, W) field (read where tau > 0).
    geometry
        Sun and view angles of the tile.
    pixel_size_m
        Ground size of a pixel, m (500 for the SLSTR ``an`` grid).
    heading_deg
        Azimuth of increasing row index, deg clockwise from north (columns point 90 deg to its
        left as seen from above); 180 = rows south, columns east.
    min_darkening
        Smallest relative darkening (0-1) that makes a pixel part of the shadow mask.

    Returns
    -------
    ShadowField
    """
    tau = as_field(tau, "tau")
    height = check_height(top_height_km, tau.shape)
    return project_shadow(tau, height, geometry, pixel_size_m, heading_deg=heading_deg,
                          min_darkening=min_darkening, optics=optics)


def project_shadow(tau: np.ndarray, height: float | np.ndarray, geometry: Geometry, pixel_size_m: float, *,
                   heading_deg: float, min_darkening: float, optics: CloudOptics) -> ShadowField:
    """:func:`cast_shadow` for a ``tau`` and ``height`` already checked (those of a :class:`.CloudField`)."""
    min_darkening = check_range("min_darkening", min_darkening, 0.0, 1.0)
    per_km = shadow_shift_per_km(geometry, pixel_size_m, heading_deg)
    cloud = tau > 0
    t_sun = sun_transmittance(tau[cloud], geometry, optics=optics)
    if isinstance(height, float):
        src = np.ones(tau.shape, np.float32)
        src[cloud] = t_sun
        shaded = _shifted(src, round(height * per_km[0]), round(height * per_km[1]), 1.0)
    else:
        rows, cols = np.nonzero(cloud)
        h = height[cloud].astype(np.float64)
        tr = rows + np.rint(h * per_km[0]).astype(np.intp)
        tc = cols + np.rint(h * per_km[1]).astype(np.intp)
        inside = (tr >= 0) & (tr < tau.shape[0]) & (tc >= 0) & (tc < tau.shape[1])
        shaded = np.ones(tau.size, np.float32)
        np.minimum.at(shaded, tr[inside] * tau.shape[1] + tc[inside], t_sun[inside])
        shaded = shaded.reshape(tau.shape)
    darkening = np.float32(1.0 - min(optics.skylight)) * (np.float32(1.0) - shaded)
    mask = (darkening > np.float32(min_darkening)) & ~cloud
    return ShadowField(shaded, mask, per_km)
