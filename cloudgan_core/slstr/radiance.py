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
    """Detector number per pixel from ``indices_an.nc`` (``detector_an``), or None when absent."""
    if not product.has("indices_an.nc"):
        return None
    with product.open_dataset("indices_an.nc", ["detector_an"]) as ds:
        det = np.asarray(ds["detector_an"].values)
    if det.shape != shape:
        raise ProductError(product.describe("indices_an.nc"), f"detector_an is {det.shape}, image grid is {shape}")
    if det.dtype.kind == "f":
        det = np.nan_to_num(det, nan=0)
    det = det.astype(np.int64)
    det[(det < 0) | (det > 255)] = 0
    return det


def solar_irradiance(product: Product, band: str) -> np.ndarray:
    """Solar irradiance per detector, mW m-2 nm-1 (``S{n}_solar_irradiance_an``)."""
    fname, var = f"{band}_quality_an.nc", f"{band}_solar_irradiance_an"
    with product.open_dataset(fname, [var]) as ds:
        e0 = np.atleast_1d(np.asarray(ds[var].values, dtype=np.float64))
    if not np.isfinite(e0).any():
        raise ProductError(product.describe(fname), f"{var} has no finite value")
    return np.where(np.isfinite(e0), e0, np.nanmean(e0))


def reflectance(product: Product, band: str, sza: np.ndarray, *, adjust: bool = True,
                detectors: np.ndarray | None = None) -> np.ndarray:
    """TOA reflectance (dimensionless, float32, NaN where fill or the sun is below the horizon).

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
    """
    if band not in ADJUSTMENT_FACTORS:
        raise ValueError(f"band must be one of {VISIBLE_BANDS}, not {band!r}")
    fname, var = f"{band}_radiance_an.nc", f"{band}_radiance_an"
    with product.open_dataset(fname, [var]) as ds:
        radiance = np.asarray(ds[var].values, dtype=np.float32)
    if radiance.shape != sza.shape:
        raise ProductError(product.describe(fname), f"{var} is {radiance.shape} but the flags grid is {sza.shape}")
    e0 = solar_irradiance(product, band).astype(np.float32)
    e0_px = e0[np.clip(detectors, 0, e0.size - 1)] if detectors is not None else e0[0]
    k = np.float32(ADJUSTMENT_FACTORS[band] if adjust else 1.0)
    mu = np.cos(np.deg2rad(sza, dtype=np.float32))
    mu[mu <= 0] = np.nan
    radiance *= np.float32(np.pi) * k
    radiance /= e0_px
    radiance /= mu
    return radiance


def false_color(s1: np.ndarray, s3: np.ndarray, s5: np.ndarray) -> np.ndarray:
    """The original CloudGAN false colour: R=(S3+S5)/2, G=S3, B=(S3+S1)/2, clipped to [0, 1], uint8.

    NaN (fill, night) becomes 0.
    """
    out = np.empty(s3.shape + (3,), dtype=np.uint8)
    for i, plane in enumerate(((s3 + s5) * 0.5, np.array(s3, dtype=np.float32), (s3 + s1) * 0.5)):
        plane = np.nan_to_num(plane, nan=0.0, copy=False)
        np.clip(plane, 0.0, 1.0, out=plane)
        plane *= 255.0
        np.rint(plane, out=plane)
        out[..., i] = plane
    return out
