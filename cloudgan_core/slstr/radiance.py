"""Top-of-atmosphere reflectance and the false-colour image.

``R = pi * L * k / (E0 * cos(SZA))`` with L the radiance (unpacked by xarray), k the radiance
adjustment factor of the SLSTR L1 product notice S3.PN-SLSTR-L1.08 (nadir view), E0 the
per-detector solar irradiance from ``S{n}_quality_an.nc`` and SZA from the tie-point grid.
"""

from __future__ import annotations

import numpy as np

from cloudgan_core.errors import ProductError
from cloudgan_core.slstr.product import Product

#: Nadir-view radiance adjustment factors, S3.PN-SLSTR-L1.08.
ADJUSTMENT_FACTORS: dict[str, float] = {"S1": 0.97, "S2": 0.98, "S3": 0.98, "S4": 1.0, "S5": 1.11, "S6": 1.13}
VISIBLE_BANDS = tuple(ADJUSTMENT_FACTORS)


def detector_index(product: Product, shape: tuple[int, int]) -> np.ndarray | None:
    """Detector number per pixel from ``indices_an.nc`` (``detector_an``), or None when absent.

    int64; -1 where the index is fill or not a detector number (0..255): such pixels get no
    solar irradiance, so no reflectance.
    """
    if not product.has("indices_an.nc"):
        return None
    with product.open_dataset("indices_an.nc", ["detector_an"]) as ds:
        det = np.asarray(ds["detector_an"].values)
    if det.shape != shape:
        raise ProductError(product.describe("indices_an.nc"), f"detector_an is {det.shape}, image grid is {shape}")
    if det.dtype.kind == "f":
        bad = ~np.isfinite(det)
        det = np.where(bad, -1, det)
    det = det.astype(np.int64)
    det[(det < 0) | (det > 255)] = -1
    return det


def solar_irradiance(product: Product, band: str) -> np.ndarray:
    """Solar irradiance per detector, mW m-2 nm-1 (``S{n}_solar_irradiance_an``), float64.

    NaN for a detector whose value is zero, negative or not finite: its pixels get no reflectance
    (a zero E0 would give infinite reflectance, a negative one a negative reflectance).

    Raises
    ------
    ProductError
        The variable is not 1-D per detector, or no detector has a positive finite value.
    """
    fname, var = f"{band}_quality_an.nc", f"{band}_solar_irradiance_an"
    with product.open_dataset(fname, [var]) as ds:
        e0 = np.atleast_1d(np.asarray(ds[var].values, dtype=np.float64))
    if e0.ndim != 1 or e0.size == 0:
        raise ProductError(product.describe(fname), f"{var} is {e0.shape}; expected one value per detector")
    usable = np.isfinite(e0) & (e0 > 0)
    if not usable.any():
        raise ProductError(product.describe(fname), f"{var} has no positive finite value (all {e0.size} detectors "
                                                    f"are zero, negative or not finite: {e0.tolist()[:8]})")
    return np.where(usable, e0, np.nan)


def reflectance(product: Product, band: str, sza: np.ndarray, *, adjust: bool = True,
                detectors: np.ndarray | None = None) -> np.ndarray:
    """TOA reflectance (dimensionless, float32).

    NaN where the radiance is fill, the sun is at or below the horizon, or the pixel's detector
    has no usable solar irradiance (see :func:`solar_irradiance`, :func:`detector_index`); never
    infinite.

    Parameters
    ----------
    band
        ``"S1"`` .. ``"S6"``.
    sza
        Solar zenith angle in degrees on the same grid.
    adjust
        Apply the S3.PN-SLSTR-L1.08 radiance adjustment factor.
    detectors
        Detector index per pixel (see :func:`detector_index`); detector 0 when None.

    Raises
    ------
    ProductError
        Missing file or variable, a radiance grid other than ``sza``'s, no usable irradiance.
    """
    if band not in ADJUSTMENT_FACTORS:
        raise ValueError(f"band must be one of {VISIBLE_BANDS}, not {band!r}")
    fname, var = f"{band}_radiance_an.nc", f"{band}_radiance_an"
    with product.open_dataset(fname, [var]) as ds:
        radiance = np.asarray(ds[var].values, dtype=np.float32)
    if radiance.shape != sza.shape:
        raise ProductError(product.describe(fname), f"{var} is {radiance.shape} but the flags grid is {sza.shape}")
    e0 = solar_irradiance(product, band).astype(np.float32)
    if detectors is None:
        if not np.isfinite(e0[0]):
            raise ProductError(product.describe(f"{band}_quality_an.nc"),
                               f"{band}_solar_irradiance_an of detector 0 is unusable and there is no detector "
                               "index (indices_an.nc) to use another")
        e0_px = e0[0]
    else:
        known = (detectors >= 0) & (detectors < e0.size)
        e0_px = np.where(known, e0[np.clip(detectors, 0, e0.size - 1)], np.float32(np.nan))
    k = np.float32(ADJUSTMENT_FACTORS[band] if adjust else 1.0)
    mu = np.cos(np.deg2rad(sza, dtype=np.float32))
    mu[~(mu > 0)] = np.nan
    radiance *= np.float32(np.pi) * k
    radiance /= e0_px
    radiance /= mu
    radiance[~np.isfinite(radiance)] = np.nan  # e.g. a broken scale_factor: no value rather than inf
    return radiance


def valid_pixels(*bands: np.ndarray) -> np.ndarray:
    """Bool mask of the pixels whose reflectance is finite in every one of ``bands``."""
    valid = np.isfinite(bands[0])
    for b in bands[1:]:
        valid &= np.isfinite(b)
    return valid


def no_reflectance_reason(sza: np.ndarray) -> str:
    """Why a scene has no finite reflectance, in words: night (the sun at or below the horizon,
    from the solar zenith ``sza`` in degrees) or fill (radiance fill, no usable irradiance)."""
    night = float(np.count_nonzero(~(sza < 90.0))) / max(sza.size, 1)
    if night == 1.0:
        return "night: the sun is at or below the horizon on every pixel"
    if night == 0.0:
        return "all fill: every pixel has radiance fill or no usable solar irradiance"
    return f"night on {100 * night:.1f} % of the pixels, radiance fill or no usable solar irradiance on the others"


def false_color(s1: np.ndarray, s3: np.ndarray, s5: np.ndarray) -> np.ndarray:
    """The original CloudGAN false colour: R=(S3+S5)/2, G=S3, B=(S3+S1)/2, clipped to [0, 1], uint8.

    A pixel whose reflectance is not finite in one of the bands (fill, night, no usable
    irradiance; see :func:`valid_pixels`) is 0 in every channel.
    """
    valid = valid_pixels(s1, s3, s5)
    out = np.zeros(s3.shape + (3,), dtype=np.uint8)
    for i, plane in enumerate(((s3 + s5) * 0.5, np.array(s3, dtype=np.float32), (s3 + s1) * 0.5)):
        plane[~valid] = 0.0
        np.clip(plane, 0.0, 1.0, out=plane)
        plane *= 255.0
        np.rint(plane, out=plane)
        out[..., i] = plane
    return out
