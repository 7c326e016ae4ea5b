"""Physical cloud model for SLSTR tiles: optical-thickness fields, a nine-band renderer, shadows.

Every cloud is an optical-thickness field tau(x, y) >= 0 at 0.55 um (0 exactly where clear) with a
cloud-top height h (km), a :class:`CloudField`. Generators make one from a cloud mask:
:func:`procedural_thickness` (a log-normal fractal field with thin edges) or
:func:`thickness_from_reflectance` (inverts a generated cloud's S3 reflectance through the
renderer's own model). :func:`render` lays a field over a clear (9, H, W) surface tile:

- S1-S6 (reflectance): a two-stream cloud layer over a Lambertian surface,
  R = T_wv r(tau_v) + t(tau_v)^2 A / (1 - r(tau_v) A);
- S7-S9 (brightness temperature, K): a grey layer at the cloud-top temperature
  T_top = T_ref - Gamma h, mixed in Planck radiance, BT = B^-1((1 - eps) B(T_s) + eps B(T_top));
- the shadow, displaced by h (tan(theta_v) u(phi_v) - tan(theta_s) u(phi_s)), darkens the
  reflective bands by d + (1 - d) T_sun.

The equations, defaults and references are in the docstrings of :mod:`.optics` (radiative
model), :mod:`.thickness` (cloud fields) and :mod:`.shadows` (shadow geometry). Pure numpy/scipy,
float32, deterministic for a seeded ``numpy.random.Generator``.
"""

from cloudgan_core.clouds.bands import (BANDS, REFLECTIVE, THERMAL, WAVELENGTH_UM, CloudModelError, Geometry)
from cloudgan_core.clouds.optics import (DEFAULT_OPTICS, CloudOptics, asymptotic_reflectance, brightness_temperature,
                                         emissivity, invert_reflectance, planck_radiance, sun_transmittance,
                                         toa_reflectance, water_vapour_transmittance)
from cloudgan_core.clouds.renderer import RenderedClouds, false_color, render
from cloudgan_core.clouds.shadows import ShadowField, cast_shadow, shadow_factor, shadow_shift_per_km
from cloudgan_core.clouds.thickness import (MIN_TAU, CloudField, ProceduralClouds, edge_taper, fractal_field,
                                            procedural_thickness, thickness_from_reflectance)

__all__ = [
    "BANDS", "REFLECTIVE", "THERMAL", "WAVELENGTH_UM", "CloudModelError", "Geometry",
    "DEFAULT_OPTICS", "CloudOptics", "asymptotic_reflectance", "brightness_temperature", "emissivity",
    "invert_reflectance", "planck_radiance", "sun_transmittance", "toa_reflectance", "water_vapour_transmittance",
    "RenderedClouds", "false_color", "render",
    "ShadowField", "cast_shadow", "shadow_factor", "shadow_shift_per_km",
    "MIN_TAU", "CloudField", "ProceduralClouds", "edge_taper", "fractal_field", "procedural_thickness",
    "thickness_from_reflectance",
]
