"""Stage ``masks``: the cloud mask and the per-pixel flags of a product, and whether to trust them.

Files under ``<root>/masks/<key>/``::

    flags.npy     uint16 (rows, cols): bit ``1 << i`` for flag ``PIXEL_FLAGS[i]`` (cloud, unfilled,
                  day, twilight, land, ocean, snow, sun_glint, sza_ok, valid; see
                  :mod:`cloudgan_core.slstr.flags`)
    cloud.npy     uint8 (rows, cols): 1 = cloud (the ``cloud`` flag)
    masks.json    the grid size, the cloud source, the share of pixels per flag
                  (``<flag>_fraction``), ``cloud_fraction_of_valid``, the manifest's cloud cover,
                  ``pixel_flags`` (the bit order) and ``notes``

:func:`plausibility` says whether a scene's mask can be trusted for training (the
``masks_plausible`` check).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from cloudgan_core.atomic import atomic_dir, require_inputs, save_npy, write_text
from cloudgan_core.settings import check_choice
from cloudgan_core.slstr.flags import CLOUD_SOURCES, PIXEL_FLAGS, SceneMasks, check_max_solar_zenith, scene_masks
from cloudgan_core.slstr.product import Product, open_product
from cloudgan_core.stages import products
from cloudgan_core.stages.base import Preview
from cloudgan_core.storage import asset_dir

NAME = "masks"
#: A scene is suspect when more than this share of its valid pixels is cloud (cold sea ice and
#: snow trip the gross-cloud test) ...
MAX_CLOUD_OF_VALID = 0.9
#: ... when less than this share of its pixels is valid for visible imagery (night, no data) ...
MIN_VALID = 0.5
#: ... or when more than this share is snow or ice.
MAX_SNOW = 0.3


class MasksConfig(BaseModel):
    """How the mask is read: which cloud test, and up to which solar zenith a pixel is valid."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = Field("summary_cloud", description="summary_cloud (confidence_an bit) or bayes (bayes_an; falls "
                                                     "back to summary_cloud when not computed)")
    max_solar_zenith: float = Field(85.0, description="pixels with a larger solar zenith (deg, within (0, 90]) are "
                                                      "invalid")

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        return check_choice("source", value, CLOUD_SOURCES)

    @field_validator("max_solar_zenith")
    @classmethod
    def _max_solar_zenith(cls, value: float) -> float:
        return check_max_solar_zenith(value)


@dataclass(frozen=True)
class MaskSummary:
    """What ``masks.json`` holds.

    Attributes
    ----------
    flag_fractions
        Share of all pixels (0..1, 6 decimals) carrying each flag of :data:`PIXEL_FLAGS`, by flag name.
    cloud_fraction_of_valid
        Share of the valid pixels that are cloud (0..1, 6 decimals; 0 when no pixel is valid).
    manifest_cloudy_pixels_percentage
        The manifest's cloud cover (percent), when it gives one.
    """

    rows: int
    columns: int
    cloud_source: str
    flag_fractions: Mapping[str, float]
    cloud_fraction_of_valid: float
    manifest_cloudy_pixels_percentage: float | None
    notes: tuple[str, ...] = ()

    @property
    def cloud_fraction(self) -> float:
        return self.flag_fractions["cloud"]

    @property
    def valid_fraction(self) -> float:
        return self.flag_fractions["valid"]

    @property
    def snow_fraction(self) -> float:
        return self.flag_fractions["snow"]

    def figures(self) -> dict[str, object]:
        """Grid, cloud source and fractions, as in ``masks.json``."""
        fractions = {f"{name}_fraction": self.flag_fractions[name] for name in PIXEL_FLAGS}
        return {"rows": self.rows, "columns": self.columns, "cloud_source": self.cloud_source, **fractions,
                "cloud_fraction_of_valid": self.cloud_fraction_of_valid,
                "manifest_cloudy_pixels_percentage": self.manifest_cloudy_pixels_percentage}

    def to_json(self) -> str:
        return json.dumps({**self.figures(), "pixel_flags": list(PIXEL_FLAGS), "notes": list(self.notes)},
                          indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> MaskSummary:
        d = json.loads(text)
        return cls(rows=d["rows"], columns=d["columns"], cloud_source=d["cloud_source"],
                   flag_fractions={name: d[f"{name}_fraction"] for name in PIXEL_FLAGS},
                   cloud_fraction_of_valid=d["cloud_fraction_of_valid"],
                   manifest_cloudy_pixels_percentage=d["manifest_cloudy_pixels_percentage"], notes=tuple(d["notes"]))


@dataclass(frozen=True)
class MasksData:
    """A product's masks: ``flags`` (uint16) and ``cloud`` (uint8 0/1), both (rows, cols), and the
    :class:`MaskSummary`. From :func:`read` the arrays are memory-mapped."""

    flags: np.ndarray
    cloud: np.ndarray
    summary: MaskSummary


@dataclass(frozen=True)
class MasksResult:
    """What :func:`build` wrote (``path``) and its summary; the preview is the cloud mask."""

    path: Path
    data: MasksData

    @property
    def notes(self) -> tuple[str, ...]:
        return self.data.summary.notes

    def figures(self) -> dict[str, object]:
        return self.data.summary.figures()

    def preview(self) -> Preview | None:
        return Preview(self.data.cloud, "cloud mask (white = cloud)")


@dataclass(frozen=True)
class Plausibility:
    """Whether a scene's mask looks trustworthy for training; ``problems`` says why not."""

    problems: tuple[str, ...]
    cloud_fraction: float
    valid_fraction: float
    cloud_fraction_of_valid: float

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def description(self) -> str:
        return "; ".join(self.problems) or "mask looks plausible"


def folder(root: Path, key: str) -> Path:
    """``<root>/masks/<key>``."""
    return asset_dir(root, NAME, key)


def compute(product: Product, config: MasksConfig = MasksConfig()) -> MasksData:
    """The masks of an open product, in memory (see :func:`~cloudgan_core.slstr.flags.scene_masks`)."""
    masks: SceneMasks = scene_masks(product, source=config.source, max_solar_zenith=config.max_solar_zenith)
    fractions = masks.fractions()
    summary = MaskSummary(rows=masks.shape[0], columns=masks.shape[1], cloud_source=masks.source,
                          flag_fractions={name: round(fractions[f"{name}_fraction"], 6) for name in PIXEL_FLAGS},
                          cloud_fraction_of_valid=round(fractions["cloud_fraction_of_valid"], 6),
                          manifest_cloudy_pixels_percentage=product.manifest.cloudy_pixels_percentage,
                          notes=tuple(masks.notes))
    return MasksData(flags=masks.flags, cloud=masks.cloud.view(np.uint8), summary=summary)


def write(root: Path, key: str, data: MasksData) -> Path:
    """Write ``flags.npy``, ``cloud.npy`` and ``masks.json`` (the folder swapped in whole)."""
    out = folder(root, key)
    with atomic_dir(out) as tmp:  # its files always belong together
        save_npy(tmp / "flags.npy", data.flags)
        save_npy(tmp / "cloud.npy", data.cloud)
        write_text(tmp / "masks.json", data.summary.to_json())
    return out


def read(root: Path, key: str) -> MasksData:
    """The stored masks of ``key`` (arrays memory-mapped).

    Raises
    ------
    MissingInputError
        ``masks`` was not materialized for ``key``.
    """
    path = folder(root, key)
    require_inputs(masks=path)
    return MasksData(flags=np.load(path / "flags.npy", mmap_mode="r"), cloud=np.load(path / "cloud.npy", mmap_mode="r"),
                     summary=MaskSummary.from_json((path / "masks.json").read_text(encoding="utf-8")))


def build(root: Path, key: str, config: MasksConfig = MasksConfig()) -> MasksResult:
    """Read the registered product ``key`` and write its masks."""
    with open_product(products.read(root, key)) as product:
        data = compute(product, config)
    return MasksResult(write(root, key, data), data)


def plausibility(summary: MaskSummary) -> Plausibility:
    """Whether the mask of a scene should be trusted for training (see the thresholds above)."""
    problems = []
    if summary.cloud_fraction_of_valid > MAX_CLOUD_OF_VALID:
        problems.append(f"{100 * summary.cloud_fraction_of_valid:.1f}% of valid pixels flagged cloud")
    if summary.valid_fraction < MIN_VALID:
        problems.append(f"only {100 * summary.valid_fraction:.1f}% of pixels valid for visible imagery")
    if summary.snow_fraction > MAX_SNOW:
        problems.append(f"{100 * summary.snow_fraction:.1f}% snow/ice")
    return Plausibility(tuple(problems), cloud_fraction=summary.cloud_fraction, valid_fraction=summary.valid_fraction,
                        cloud_fraction_of_valid=summary.cloud_fraction_of_valid)
