"""Top-of-atmosphere reflectance and the false-colour image.

``R = pi * L * k / (E0 * cos(SZA))`` with L the radiance (unpacked from int16 in float32), k the radiance
adjustment factor of the SLSTR L1 product notice S3.PN-SLSTR-L1.08 (nadir view), E0 the
per-detector solar irradiance from ``S{n}_quality_an.nc`` and SZA from the tie-point grid.
"""

from __future__ import annotations

import numpy as np

from cloudgan_core.errors import ProductError
from cloudgan_core.slstr.blocks import row_blocks
from cloudgan_core.slstr.product import Product

#: Nadir-view radiance adjustment factors, S3.PN-SLSTR-L1.08.
ADJUSTMENT_FACTORS: dict[str, float] = {"S1": 0.97, "S2": 0.98, "S3": 0.98, "S4": 1.0, "S5": 1.11, "S6": 1.13}
VISIBLE_BANDS = tuple(ADJUSTMENT_FACTORS)


def detector_index(product: Product, shape: tuple[int, int]) -> np.ndarray | None:
    """Detector number per pixel from ``indices_an.nc`` (``detector_an``), or None when absent.

    int16; -1 where the index is fill or not a detector number (0..255): such pixels get no
    solar irradiance, so no reflectance.
    """
    if not product.has("indices_an.nc"):
        return None
    with product.open_netcdf("indices_an.nc", ["detector_an"]) as nc:
        if nc.shape("detector_an") != shape:
            raise ProductError(nc.label, f"detector_an is {nc.shape('detector_an')}, image grid is {shape}")
        det = nc.read("detector_an")
        fills = nc.packing("detector_an").fills
    if det.dtype == np.uint8 and not fills:
        return det.astype(np.int16)  # every value is a detector number
    bad = (det < 0) | (det > 255)
    if det.dtype.kind == "f":
        bad |= ~np.isfinite(det)
    for fill in fills:
        bad |= det == fill
    return np.where(bad, -1, det).astype(np.int16)


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
    with product.open_netcdf(fname, [var]) as nc:
        e0 = np.atleast_1d(nc.read_unpacked(var, np.float64))
    if e0.ndim != 1 or e0.size == 0:
        raise ProductError(product.describe(fname), f"{var} is {e0.shape}; expected one value per detector")
    usable = np.isfinite(e0) & (e0 > 0)
    if not usable.any():
        raise ProductError(product.describe(fname), f"{var} has no positive finite value (all {e0.size} detectors "
                                                    f"are zero, negative or not finite: {e0.tolist()[:8]})")
    return np.where(usable, e0, np.nan)


def sun_cosine(sza: np.ndarray) -> np.ndarray:
    """cos(solar zenith) (float32) from degrees; NaN where the sun is at or below the horizon."""
    mu = np.cos(np.deg2rad(sza, dtype=np.float32))
    np.copyto(mu, np.float32(np.nan), where=~(mu > 0))
    return mu


def reflectance(product: Product, band: str, sza: np.ndarray, *, adjust: bool = True,
                detectors: np.ndarray | None = None, cos_sza: np.ndarray | None = None,
                out: np.ndarray | None = None) -> np.ndarray:
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
    cos_sza
        :func:`sun_cosine` of ``sza`` when the caller has it (several bands share it).
    out
        float32 array of ``sza``'s shape to write into (a plane of a bands array, say); returned.

    Raises
    ------
    ProductError
        Missing file or variable, a radiance grid other than ``sza``'s, no usable irradiance.
    """
    if band not in ADJUSTMENT_FACTORS:
        raise ValueError(f"band must be one of {VISIBLE_BANDS}, not {band!r}")
    fname, var = f"{band}_radiance_an.nc", f"{band}_radiance_an"
    with product.open_netcdf(fname, [var]) as nc:
        if nc.shape(var) != sza.shape:
            raise ProductError(nc.label, f"{var} is {nc.shape(var)} but the flags grid is {sza.shape}")
        packing = nc.packing(var)
        stored = nc.read(var)
    e0 = solar_irradiance(product, band)
    k = ADJUSTMENT_FACTORS[band] if adjust else 1.0
    factor = (np.pi * k / e0).astype(np.float32)  # per detector; NaN where E0 is unusable
    if detectors is None:
        if not np.isfinite(factor[0]):
            raise ProductError(product.describe(f"{band}_quality_an.nc"),
                               f"{band}_solar_irradiance_an of detector 0 is unusable and there is no detector "
                               "index (indices_an.nc) to use another")
    else:
        # one entry per detector number 0..255 and a last one (NaN) that index -1 (unknown) reaches
        table = np.full(257, np.nan, np.float32)
        table[: min(factor.size, 256)] = factor[:256]
    mu = sun_cosine(sza) if cos_sza is None else cos_sza
    if out is None:
        out = np.empty(sza.shape, np.float32)
    elif out.shape != sza.shape or out.dtype != np.float32:
        raise ValueError(f"out must be float32 {sza.shape}, not {out.dtype} {out.shape}")
    for rows in row_blocks(*sza.shape):
        block = packing.unpack(stored[rows], out=out[rows])  # radiance, W m-2 sr-1 um-1; NaN at fill
        block *= factor[0] if detectors is None else table[detectors[rows]]
        block /= mu[rows]
        infinite = np.isinf(block)
        if infinite.any():  # e.g. a broken scale_factor: no value rather than inf
            block[infinite] = np.nan
    return out


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


def false_color(s1: np.ndarray, s3: np.ndarray, s5: np.ndarray, *, valid: np.ndarray | None = None) -> np.ndarray:
    """The original CloudGAN false colour: R=(S3+S5)/2, G=S3, B=(S3+S1)/2, clipped to [0, 1], uint8
    (an extra last axis of 3 channels on the bands' shape).

    A pixel whose reflectance is not finite in one of the bands (fill, night, no usable
    irradiance; see :func:`valid_pixels`, which ``valid`` is when the caller has it) is 0 in every
    channel.
    """
    if valid is None:
        valid = valid_pixels(s1, s3, s5)
    out = np.empty(s3.shape + (3,), dtype=np.uint8)
    for rows in row_blocks(s3.shape[0], s3[:1].size):  # any shape: (rows, cols), or tiles (n, rows, cols)
        plane = np.empty(s3[rows].shape, dtype=np.float32)
        invalid = ~valid[rows]
        for i, other in enumerate((s5, None, s1)):
            if other is None:
                np.multiply(s3[rows], np.float32(255.0), out=plane)
            else:  # (s3 + other) / 2 * 255 in one rounding, as (x * 0.5) * 255 is exact in its first step
                np.add(s3[rows], other[rows], out=plane)
                plane *= np.float32(127.5)
            np.clip(plane, 0.0, 255.0, out=plane)
            np.copyto(plane, np.float32(0.0), where=invalid)
            np.rint(plane, out=plane)
            out[rows, ..., i] = plane
    return out
