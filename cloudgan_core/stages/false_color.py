"""Stage ``false_color``: all nine nadir bands of a product on the 500 m grid, and the false-colour image.

Files under ``<root>/false_color/<key>/``::

    false_color.npy     uint8 (rows, cols, 3): R = (S3+S5)/2, G = S3, B = (S3+S1)/2 of the
                        reflectance, clipped to [0, 1], x255; 0 where a pixel is not valid
    valid.npy           uint8 (rows, cols): 1 where all nine bands are finite
    bands.npy           float32 (9, rows, cols) in the order of :data:`cloudgan_core.clouds.BANDS`:
                        S1-S6 TOA reflectance, S7-S9 brightness temperature in K (the 1 km values
                        repeated over their 2 x 2 pixels), NaN where there is none
    false_color.json    grid, bands, whether the adjustment factors were applied, the valid share,
                        the solar zenith range, the median reflectance of S1-S6 and the median
                        brightness temperature of S7-S9

The science is in :mod:`cloudgan_core.slstr.radiance` (reflectance),
:mod:`cloudgan_core.slstr.thermal` (brightness temperature) and :mod:`cloudgan_core.slstr.geometry`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from cloudgan_core.atomic import atomic_dir, require_inputs, save_npy, write_text
from cloudgan_core.errors import ProductError
from cloudgan_core.slstr.flags import FLAGS_FILE, scene_shape
from cloudgan_core.slstr.geometry import grid_attrs, solar_zenith
from cloudgan_core.slstr.product import RADIANCE_BANDS, THERMAL_BANDS, Product, open_product
from cloudgan_core.slstr.radiance import (detector_index, false_color, no_reflectance_reason, reflectance, sun_cosine,
                                          valid_pixels)
from cloudgan_core.slstr.thermal import brightness_temperature
from cloudgan_core.stages import products
from cloudgan_core.stages.base import Preview
from cloudgan_core.storage import asset_dir

NAME = "false_color"


#: The bands of ``bands.npy``, in order (that of :data:`cloudgan_core.clouds.BANDS`).
BANDS: tuple[str, ...] = RADIANCE_BANDS + THERMAL_BANDS
BANDS_FILE = "bands.npy"
#: Threads that read and compute the bands (each band's read also inflates chunks in threads).
BAND_THREADS = 3


class FalseColorConfig(BaseModel):
    """Whether to apply the radiance adjustment factors."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    adjustment_factors: bool = Field(True, description="apply the S3.PN-SLSTR-L1.08 radiance adjustment factors "
                                                       "(S1-S6)")


@dataclass(frozen=True)
class FalseColorSummary:
    """What ``false_color.json`` holds.

    Attributes
    ----------
    valid_fraction
        Share of pixels (0..1) with a finite value in all nine bands.
    solar_zenith_min, solar_zenith_max
        Range of the solar zenith over the scene, degrees.
    median
        Median finite value per band (of every 4th pixel in each direction; reflectance for
        S1-S6, K for S7-S9), None when none.
    """

    rows: int
    columns: int
    bands: tuple[str, ...]
    adjustment_factors: bool
    valid_fraction: float
    solar_zenith_min: float
    solar_zenith_max: float
    median: Mapping[str, float | None]

    @staticmethod
    def _median_key(band: str) -> str:
        return f"{band}_median_reflectance" if band in RADIANCE_BANDS else f"{band}_median_bt_k"

    def figures(self) -> dict[str, object]:
        return {"rows": self.rows, "columns": self.columns, "bands": ",".join(self.bands),
                "adjustment_factors": self.adjustment_factors, "valid_fraction": self.valid_fraction,
                "solar_zenith_min": self.solar_zenith_min, "solar_zenith_max": self.solar_zenith_max,
                **{self._median_key(b): self.median[b] for b in self.bands}}

    def to_json(self) -> str:
        return json.dumps(self.figures(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FalseColorSummary:
        d = json.loads(text)
        bands = tuple(d["bands"].split(","))
        return cls(rows=d["rows"], columns=d["columns"], bands=bands, adjustment_factors=d["adjustment_factors"],
                   valid_fraction=d["valid_fraction"], solar_zenith_min=d["solar_zenith_min"],
                   solar_zenith_max=d["solar_zenith_max"], median={b: d[cls._median_key(b)] for b in bands})


@dataclass(frozen=True)
class FalseColorData:
    """A product's bands and false colour: ``image`` (uint8 rows x cols x 3), ``valid`` (uint8 0/1),
    ``bands`` (float32 9 x rows x cols, :data:`BANDS`) and the summary. From :func:`read` the
    arrays are memory-mapped."""

    image: np.ndarray
    valid: np.ndarray
    bands: np.ndarray
    summary: FalseColorSummary


@dataclass(frozen=True)
class FalseColorResult:
    """What :func:`build` wrote (``path``) and its summary; the preview is the image."""

    path: Path
    data: FalseColorData
    notes: tuple[str, ...] = ()

    def figures(self) -> dict[str, object]:
        return self.data.summary.figures()

    def preview(self) -> Preview | None:
        return Preview(self.data.image, "false colour")


def folder(root: Path, key: str) -> Path:
    """``<root>/false_color/<key>``."""
    return asset_dir(root, NAME, key)


def _median(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return round(float(np.median(finite)), 4) if finite.size else None


def compute(product: Product, config: FalseColorConfig = FalseColorConfig()) -> FalseColorData:
    """The nine bands and the false-colour image of an open product, in memory.

    S1-S6: TOA reflectance (:func:`~cloudgan_core.slstr.radiance.reflectance`); S7-S9: brightness
    temperature repeated from the 1 km grid (:func:`~cloudgan_core.slstr.thermal.brightness_temperature`).
    Each band is read and computed straight into its plane of one bands array, a few bands at a
    time in threads (inflating, unpacking and the arithmetic release the GIL); the solar zenith,
    its cosine and the detector index are computed once for all of them.

    Raises
    ------
    ProductError
        The product is unusable (a missing file or variable, a band of another grid, fill
        everywhere in a thermal band...), or no pixel is finite in all nine bands ("no valid
        visible pixel" when S1-S6 have none: all fill, night, no usable solar irradiance).
    """
    shape = scene_shape(product)
    with product.open_netcdf(FLAGS_FILE) as nc:
        grid = grid_attrs(nc.attrs, nc.label)
    sza = solar_zenith(product, shape, image_grid=grid)
    mu = sun_cosine(sza)
    det = detector_index(product, shape)
    bands = np.empty((len(BANDS), *shape), np.float32)

    def one(i: int) -> None:
        band = BANDS[i]
        if band in THERMAL_BANDS:
            brightness_temperature(product, band, shape, image_grid=grid, out=bands[i])
        else:
            reflectance(product, band, sza, adjust=config.adjustment_factors, detectors=det, cos_sza=mu, out=bands[i])

    with ThreadPoolExecutor(BAND_THREADS) as pool:
        for _ in pool.map(one, range(len(BANDS))):
            pass
    by_band = dict(zip(BANDS, bands))
    visible = valid_pixels(*bands[: len(RADIANCE_BANDS)])
    n_visible = int(np.count_nonzero(visible))
    if n_visible == 0:
        raise ProductError(product.path, f"no valid visible pixel in {product.id}: the {'/'.join(RADIANCE_BANDS)} "
                                         f"reflectance is finite nowhere ({no_reflectance_reason(sza)})")
    valid = visible
    for plane in bands[len(RADIANCE_BANDS):]:
        valid &= np.isfinite(plane)
    n_valid = int(np.count_nonzero(valid))
    if n_valid == 0:
        raise ProductError(product.path, f"no valid pixel in {product.id}: none of the {n_visible} pixels with a "
                                         f"visible reflectance has a {'/'.join(THERMAL_BANDS)} brightness temperature")
    image = false_color(by_band["S1"], by_band["S3"], by_band["S5"], valid=valid)
    summary = FalseColorSummary(rows=shape[0], columns=shape[1], bands=BANDS, adjustment_factors=config.adjustment_factors,
                                valid_fraction=round(n_valid / valid.size, 6),
                                solar_zenith_min=round(float(np.nanmin(sza)), 3),
                                solar_zenith_max=round(float(np.nanmax(sza)), 3),
                                median={b: _median(by_band[b][::4, ::4]) for b in BANDS})
    return FalseColorData(image=image, valid=valid.view(np.uint8), bands=bands, summary=summary)


def write(root: Path, key: str, data: FalseColorData) -> Path:
    """Write ``false_color.npy``, ``valid.npy``, ``bands.npy`` and ``false_color.json`` (the folder
    swapped in whole)."""
    out = folder(root, key)
    with atomic_dir(out) as tmp:
        save_npy(tmp / "false_color.npy", data.image)
        save_npy(tmp / "valid.npy", data.valid)
        save_npy(tmp / BANDS_FILE, data.bands)
        write_text(tmp / "false_color.json", data.summary.to_json())
    return out


def read(root: Path, key: str) -> FalseColorData:
    """The stored bands and false colour of ``key`` (arrays memory-mapped).

    Raises
    ------
    MissingInputError
        ``false_color`` was not materialized for ``key``.
    ProductError
        ``valid.npy`` or ``bands.npy`` is missing (written by an older version: materialize
        false_color again), or ``bands.npy`` is not (9, rows, cols) float32 of the image.
    """
    path = folder(root, key)
    require_inputs(false_color=path)
    for name in ("valid.npy", BANDS_FILE):
        if not (path / name).is_file():
            raise ProductError(path, f"{name} is missing (false colour written by an older version); "
                                     "materialize false_color again")
    image = np.load(path / "false_color.npy", mmap_mode="r")
    bands = np.load(path / BANDS_FILE, mmap_mode="r")
    if bands.dtype != np.float32 or bands.shape != (len(BANDS), *image.shape[:2]):
        raise ProductError(path / BANDS_FILE, f"is {bands.dtype} {bands.shape}, not float32 "
                                              f"{(len(BANDS), *image.shape[:2])}; materialize false_color again")
    return FalseColorData(image=image, valid=np.load(path / "valid.npy", mmap_mode="r"), bands=bands,
                          summary=FalseColorSummary.from_json((path / "false_color.json").read_text(encoding="utf-8")))


def build(root: Path, key: str, config: FalseColorConfig = FalseColorConfig()) -> FalseColorResult:
    """Read the registered product ``key`` and write its bands and false colour. Nothing is written
    when it has no valid pixel."""
    product_dir = products.read(root, key)
    with open_product(product_dir) as product:
        data = compute(product, config)
    return FalseColorResult(write(root, key, data), data)
