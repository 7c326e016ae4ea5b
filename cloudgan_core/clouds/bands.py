"""SLSTR bands, scene geometry and input checks shared by the cloud model.

Bands and units
---------------
Arrays of bands are ``(9, H, W)`` float32 in the order of :data:`BANDS`:

- S1-S6 (:data:`REFLECTIVE`): top-of-atmosphere reflectance ``R = pi L / (E0 cos SZA)``,
  dimensionless (as :func:`cloudgan_core.slstr.radiance.reflectance` gives it);
- S7-S9 (:data:`THERMAL`): brightness temperature, K.

Central wavelengths (Donlon et al., 2012, Table 3): S1 0.555, S2 0.659, S3 0.865, S4 1.375,
S5 1.61, S6 2.25, S7 3.74, S8 10.85, S9 12.0 um.

Scene geometry
--------------
:class:`Geometry` holds one solar and one view direction per tile, in degrees: zenith angles
from the local vertical, azimuths clockwise from north (the SLSTR ``geometry_tn`` convention),
each azimuth pointing from the pixel towards the sun or the satellite.

Reference: Donlon, C. et al. (2012), The Global Monitoring for Environment and Security (GMES)
Sentinel-3 mission, Remote Sens. Environ. 120, 37-57.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cloudgan_core.errors import CloudGANError

BANDS: tuple[str, ...] = ("S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9")
REFLECTIVE: tuple[str, ...] = BANDS[:6]
THERMAL: tuple[str, ...] = BANDS[6:]
#: Central wavelength per band, micrometres.
WAVELENGTH_UM: dict[str, float] = {"S1": 0.555, "S2": 0.659, "S3": 0.865, "S4": 1.375, "S5": 1.61,
                                   "S6": 2.25, "S7": 3.74, "S8": 10.85, "S9": 12.0}
#: Largest solar zenith angle the model accepts, degrees (plane-parallel daytime geometry).
MAX_SOLAR_ZENITH = 85.0
#: Largest view zenith angle the model accepts, degrees (SLSTR nadir view reaches ~55 deg).
MAX_VIEW_ZENITH = 70.0
#: Accepted brightness-temperature range of a surface tile, K.
THERMAL_RANGE_K = (100.0, 400.0)


class CloudModelError(CloudGANError, ValueError):
    """Bad input to, or a bad setting of, the cloud model; the message names what and why."""


def band_index(band: str) -> int:
    """Position of ``band`` in :data:`BANDS`; :class:`CloudModelError` for an unknown name."""
    try:
        return BANDS.index(band)
    except ValueError:
        raise CloudModelError(f"unknown band {band!r}; expected one of {', '.join(BANDS)}") from None


def _finite_number(name: str, value: object) -> float:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise CloudModelError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise CloudModelError(f"{name} must be finite, got {out}")
    return out


def check_range(name: str, value: object, low: float, high: float, unit: str = "") -> float:
    """``value`` as a float inside ``[low, high]``, else :class:`CloudModelError` naming it."""
    out = _finite_number(name, value)
    if not low <= out <= high:
        raise CloudModelError(f"{name} must be within [{low:g}, {high:g}]{unit}, got {out:g}{unit}")
    return out


@dataclass(frozen=True)
class Geometry:
    """Sun and view directions of one tile, degrees.

    Parameters
    ----------
    solar_zenith
        Solar zenith angle, 0-85 deg.
    solar_azimuth
        Azimuth of the sun seen from the pixel, deg clockwise from north (any finite value; taken
        modulo 360).
    view_zenith
        View (satellite) zenith angle, 0-70 deg; 0 = nadir.
    view_azimuth
        Azimuth of the satellite seen from the pixel, deg clockwise from north.
    """

    solar_zenith: float
    solar_azimuth: float
    view_zenith: float = 0.0
    view_azimuth: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "solar_zenith",
                           check_range("solar_zenith", self.solar_zenith, 0.0, MAX_SOLAR_ZENITH, " deg"))
        object.__setattr__(self, "view_zenith",
                           check_range("view_zenith", self.view_zenith, 0.0, MAX_VIEW_ZENITH, " deg"))
        for name in ("solar_azimuth", "view_azimuth"):
            object.__setattr__(self, name, _finite_number(name, getattr(self, name)) % 360.0)

    @property
    def mu0(self) -> float:
        """Cosine of the solar zenith angle."""
        return math.cos(math.radians(self.solar_zenith))

    @property
    def mu(self) -> float:
        """Cosine of the view zenith angle."""
        return math.cos(math.radians(self.view_zenith))


def as_mask(mask: object, what: str = "mask") -> np.ndarray:
    """A 2-D cloud mask as bool (True = cloud); values must be 0/1 (or bool)."""
    arr = np.asarray(mask)
    if arr.ndim != 2 or min(arr.shape) == 0:
        raise CloudModelError(f"{what} must be a non-empty 2-D (H, W) array, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind not in "uif":
        raise CloudModelError(f"{what} must be bool or numeric 0/1, got dtype {arr.dtype}")
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        raise CloudModelError(f"{what} values must be 0 (clear) or 1 (cloud); found "
                              f"{np.unique(arr[bad])[:5].tolist()} (a 0/255 mask must be divided by 255 first)")
    return arr != 0


def as_field(values: object, what: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A finite, non-negative 2-D float32 field (of ``shape`` when given)."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "uif":
        raise CloudModelError(f"{what} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    if arr.ndim != 2 or min(arr.shape) == 0:
        raise CloudModelError(f"{what} must be a non-empty 2-D (H, W) array, got shape {arr.shape}")
    if shape is not None and arr.shape != tuple(shape):
        raise CloudModelError(f"{what} is {arr.shape} but the tile is {tuple(shape)}")
    if not np.isfinite(arr).all():
        raise CloudModelError(f"{what} has {int((~np.isfinite(arr)).sum())} non-finite values")
    if (arr < 0).any():
        raise CloudModelError(f"{what} must be >= 0, found minimum {float(arr.min()):g}")
    return arr


def as_bands(surface: object, what: str = "surface") -> np.ndarray:
    """A ``(9, H, W)`` float32 band stack: finite, thermal bands within :data:`THERMAL_RANGE_K`."""
    arr = np.asarray(surface)
    if arr.dtype.kind not in "uif":
        raise CloudModelError(f"{what} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    if arr.ndim != 3 or arr.shape[0] != len(BANDS) or min(arr.shape[1:]) == 0:
        raise CloudModelError(f"{what} must be (9, H, W) in the band order {', '.join(BANDS)}; got shape {arr.shape}")
    if not np.isfinite(arr).all():
        bad = [b for b, plane in zip(BANDS, arr) if not np.isfinite(plane).all()]
        raise CloudModelError(f"{what} has non-finite values in {', '.join(bad)}; clear surface tiles must be finite")
    thermal = arr[len(REFLECTIVE):]
    low, high = THERMAL_RANGE_K
    if thermal.min() < low or thermal.max() > high:
        raise CloudModelError(f"{what} brightness temperatures (S7-S9) must lie within [{low:g}, {high:g}] K, "
                              f"found [{float(thermal.min()):g}, {float(thermal.max()):g}] K")
    return arr
