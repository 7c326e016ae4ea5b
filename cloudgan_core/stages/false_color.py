"""Stage ``false_color``: top-of-atmosphere reflectance of S1/S3/S5 and the false-colour image.

Files under ``<root>/false_color/<key>/``::

    false_color.npy     uint8 (rows, cols, 3): R = (S3+S5)/2, G = S3, B = (S3+S1)/2 of the
                        reflectance, clipped to [0, 1], x255; 0 where a band has no reflectance
    valid.npy           uint8 (rows, cols): 1 where the reflectance is finite in S1, S3 and S5
    reflectance.npy     float32 (3, rows, cols): S1, S3, S5 reflectance, NaN where there is none
                        (only with ``save_reflectance``)
    false_color.json    grid, bands, whether the adjustment factors were applied, the valid share,
                        the solar zenith range and the median reflectance per band

The science is in :mod:`cloudgan_core.slstr.radiance` and :mod:`cloudgan_core.slstr.geometry`.
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
from cloudgan_core.slstr.flags import scene_shape
from cloudgan_core.slstr.geometry import solar_zenith
from cloudgan_core.slstr.product import FALSE_COLOR_BANDS, Product, open_product
from cloudgan_core.slstr.radiance import (detector_index, false_color, no_reflectance_reason, reflectance, sun_cosine,
                                          valid_pixels)
from cloudgan_core.stages import products
from cloudgan_core.stages.base import Preview
from cloudgan_core.storage import asset_dir

NAME = "false_color"


class FalseColorConfig(BaseModel):
    """Whether to apply the radiance adjustment factors, and whether to keep the reflectances."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    adjustment_factors: bool = Field(True, description="apply the S3.PN-SLSTR-L1.08 radiance adjustment factors")
    save_reflectance: bool = Field(True, description="also keep float32 reflectances (reflectance.npy)")


@dataclass(frozen=True)
class FalseColorSummary:
    """What ``false_color.json`` holds.

    Attributes
    ----------
    valid_fraction
        Share of pixels (0..1) with a finite reflectance in every band.
    solar_zenith_min, solar_zenith_max
        Range of the solar zenith over the scene, degrees.
    median_reflectance
        Median finite reflectance per band (of every 4th pixel in each direction), None when none.
    """

    rows: int
    columns: int
    bands: tuple[str, ...]
    adjustment_factors: bool
    valid_fraction: float
    solar_zenith_min: float
    solar_zenith_max: float
    median_reflectance: Mapping[str, float | None]

    def figures(self) -> dict[str, object]:
        return {"rows": self.rows, "columns": self.columns, "bands": ",".join(self.bands),
                "adjustment_factors": self.adjustment_factors, "valid_fraction": self.valid_fraction,
                "solar_zenith_min": self.solar_zenith_min, "solar_zenith_max": self.solar_zenith_max,
                **{f"{b}_median_reflectance": self.median_reflectance[b] for b in self.bands}}

    def to_json(self) -> str:
        return json.dumps(self.figures(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FalseColorSummary:
        d = json.loads(text)
        bands = tuple(d["bands"].split(","))
        return cls(rows=d["rows"], columns=d["columns"], bands=bands, adjustment_factors=d["adjustment_factors"],
                   valid_fraction=d["valid_fraction"], solar_zenith_min=d["solar_zenith_min"],
                   solar_zenith_max=d["solar_zenith_max"],
                   median_reflectance={b: d[f"{b}_median_reflectance"] for b in bands})


@dataclass(frozen=True)
class FalseColorData:
    """A product's false colour: ``image`` (uint8 rows x cols x 3), ``valid`` (uint8 0/1),
    ``reflectance`` (float32 bands x rows x cols; None when not kept) and the summary. From
    :func:`read` the arrays are memory-mapped."""

    image: np.ndarray
    valid: np.ndarray
    reflectance: np.ndarray | None
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
    """Reflectance of S1/S3/S5 and the false-colour image of an open product, in memory.

    The bands are read and computed in parallel threads (inflating, unpacking and the arithmetic
    release the GIL); the solar zenith and its cosine are computed once for all of them.

    Raises
    ------
    ProductError
        The product is unusable, or no pixel has a finite reflectance in every band ("no valid
        visible pixel": all fill, night, no usable solar irradiance).
    """
    bands = FALSE_COLOR_BANDS
    shape = scene_shape(product)
    sza = solar_zenith(product, shape)
    mu = sun_cosine(sza)
    det = detector_index(product, shape)
    refl = np.empty((len(bands), *shape), np.float32)

    def one(i: int) -> None:
        refl[i] = reflectance(product, bands[i], sza, adjust=config.adjustment_factors, detectors=det, cos_sza=mu)

    with ThreadPoolExecutor(len(bands)) as pool:
        for _ in pool.map(one, range(len(bands))):
            pass
    by_band = dict(zip(bands, refl))
    valid = valid_pixels(*refl)
    n_valid = int(np.count_nonzero(valid))
    if n_valid == 0:
        raise ProductError(product.path, f"no valid visible pixel in {product.id}: the {'/'.join(bands)} "
                                         f"reflectance is finite nowhere ({no_reflectance_reason(sza)})")
    image = false_color(by_band["S1"], by_band["S3"], by_band["S5"], valid=valid)
    summary = FalseColorSummary(rows=shape[0], columns=shape[1], bands=bands, adjustment_factors=config.adjustment_factors,
                                valid_fraction=round(n_valid / valid.size, 6),
                                solar_zenith_min=round(float(np.nanmin(sza)), 3),
                                solar_zenith_max=round(float(np.nanmax(sza)), 3),
                                median_reflectance={b: _median(by_band[b][::4, ::4]) for b in bands})
    return FalseColorData(image=image, valid=valid.view(np.uint8),
                          reflectance=refl if config.save_reflectance else None, summary=summary)


def write(root: Path, key: str, data: FalseColorData) -> Path:
    """Write ``false_color.npy``, ``valid.npy``, ``reflectance.npy`` (when the data has it) and
    ``false_color.json`` (the folder swapped in whole)."""
    out = folder(root, key)
    with atomic_dir(out) as tmp:
        save_npy(tmp / "false_color.npy", data.image)
        save_npy(tmp / "valid.npy", data.valid)
        if data.reflectance is not None:
            save_npy(tmp / "reflectance.npy", data.reflectance)
        write_text(tmp / "false_color.json", data.summary.to_json())
    return out


def read(root: Path, key: str) -> FalseColorData:
    """The stored false colour of ``key`` (arrays memory-mapped; ``reflectance`` None when not kept).

    Raises
    ------
    MissingInputError
        ``false_color`` was not materialized for ``key``.
    ProductError
        ``valid.npy`` is missing (written by an older version: materialize false_color again).
    """
    path = folder(root, key)
    require_inputs(false_color=path)
    if not (path / "valid.npy").is_file():
        raise ProductError(path, "valid.npy is missing (false colour written by an older version); "
                                 "materialize false_color again")
    refl = path / "reflectance.npy"
    return FalseColorData(image=np.load(path / "false_color.npy", mmap_mode="r"),
                          valid=np.load(path / "valid.npy", mmap_mode="r"),
                          reflectance=np.load(refl, mmap_mode="r") if refl.is_file() else None,
                          summary=FalseColorSummary.from_json((path / "false_color.json").read_text(encoding="utf-8")))


def build(root: Path, key: str, config: FalseColorConfig = FalseColorConfig()) -> FalseColorResult:
    """Read the registered product ``key`` and write its false colour. Nothing is written when it
    has no valid visible pixel."""
    product_dir = products.read(root, key)
    with open_product(product_dir) as product:
        data = compute(product, config)
    return FalseColorResult(write(root, key, data), data)
