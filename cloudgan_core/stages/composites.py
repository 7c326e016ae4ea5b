"""The ``composites`` stage: a product's generated clouds laid over surface tiles, mask-exact.

Files (``<root>/composites/<key>/``), aligned tile by tile:

- ``images.npy``, ``clouds.npy``, ``surfaces.npy``: ``uint8 (N, H, W, 3)`` the composites, the
  generated cloud and the surface behind each (:data:`ARRAYS`);
- ``masks.npy``: ``uint8 (N, H, W)``, 1 = cloud;
- ``index.csv``: one row per composite with the columns of :data:`COLUMNS` (where the mask and
  the surface come from, cover as a fraction 0..1, mean opacity and brightness change);
- ``composites.json``: the settings and figures (:class:`CompositesSummary`).

Inputs: :mod:`~cloudgan_core.stages.synthetic_clouds` of the product and the pool of
:mod:`~cloudgan_core.stages.surface_tiles`. The blending is :mod:`cloudgan_core.composite`'s.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from cloudgan_core.atomic import atomic_dir, require_inputs, save_npy, write_text
from cloudgan_core.composite import BLENDS, assign_surfaces, check_opacity, composite, composite_stats
from cloudgan_core.digests import new_digest
from cloudgan_core.errors import CloudGANError
from cloudgan_core.preview import grid
from cloudgan_core.settings import check_choice, check_fraction, check_positive
from cloudgan_core.stages import surface_tiles, synthetic_clouds
from cloudgan_core.stages.base import Preview
from cloudgan_core.storage import asset_dir

NAME = "composites"
#: The arrays of a partition, one ``<name>.npy`` each, aligned tile by tile.
ARRAYS = ("images", "masks", "clouds", "surfaces")
INDEX_FILE = "index.csv"
SUMMARY_FILE = "composites.json"
COLUMNS = ("tile", "product", "row", "col", "cloud_fraction", "surface", "surface_source", "surface_product",
           "mean_opacity", "brightness_change_inside")
_INT_COLUMNS = ("tile", "row", "col", "surface")
_FLOAT_COLUMNS = ("cloud_fraction", "mean_opacity", "brightness_change_inside")
#: Rows (mask | cloud | surface | composite) in the preview.
PREVIEW_ROWS = 4


class CompositesConfig(BaseModel):
    """How the clouds are laid over the surfaces (see :func:`cloudgan_core.composite.composite`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    blend: str = Field("alpha", description="'alpha': mask-exact opacity blend out = surface*(1-a) + colour*a "
                                            "(a = 0 outside the mask); 'original': the original CloudGAN's 50 % "
                                            "blend + intensity stretch, for comparison only (changes clear pixels; "
                                            "the checks on composites fail on it)")
    min_opacity: float = Field(0.35, description="opacity of the darkest masked cloud pixel (0..1): inside the mask "
                                                 "a = min + (max - min) * (mean RGB / 255) ** gamma")
    max_opacity: float = Field(1.0, description="opacity of a white cloud pixel (0..1)")
    gamma: float = Field(1.0, description="exponent on the cloud brightness (>1: thinner mid-bright cloud)")
    whiten: float = Field(0.5, description="share of white mixed into the cloud colour (0..1)")
    seed: int = Field(0, description="seed of the surface assignment; each partition uses "
                                     "sha256('<seed>:<product>') so products get different surfaces")
    prefer_other_product: bool = Field(True, description="lay a cloud over a surface from another product "
                                                         "when an unused one is left")

    @field_validator("blend")
    @classmethod
    def _blend(cls, value: str) -> str:
        return check_choice("blend", value, BLENDS)

    @field_validator("min_opacity", "max_opacity", "whiten")
    @classmethod
    def _share(cls, value: float, info: ValidationInfo) -> float:
        return check_fraction(info.field_name, value)

    @field_validator("gamma")
    @classmethod
    def _gamma(cls, value: float) -> float:
        return check_positive("gamma", value)

    @model_validator(mode="after")
    def _opacity(self):
        check_opacity(self.min_opacity, self.max_opacity, self.gamma)
        return self


@dataclass(frozen=True)
class CompositesSummary:
    """``composites.json``: the settings a partition was made with and its figures.

    ``assignment_seed`` is :func:`derived_seed` ``(seed, product)``; ``surface_pool`` and
    ``surfaces_used`` count the pool's tiles and the distinct ones used; ``model``,
    ``model_sha256`` and ``clouds_seed`` name the generator run of the clouds; the means are over
    the cloud pixels (opacity, brightness change in digital numbers) and over all pixels
    (``mean_brightness``).
    """

    product: str
    count: int
    blend: str
    min_opacity: float
    max_opacity: float
    gamma: float
    whiten: float
    seed: int
    assignment_seed: int
    prefer_other_product: bool
    surface_pool: int
    surfaces_used: int
    model_sha256: str
    model: str | None
    clouds_seed: int | None
    mean_opacity: float
    mean_brightness_change_inside: float
    mean_brightness: float

    def settings(self) -> dict[str, float | int]:
        """The composite settings that must agree across the partitions of one training set."""
        return {"min_opacity": self.min_opacity, "max_opacity": self.max_opacity, "gamma": self.gamma,
                "whiten": self.whiten, "seed": self.seed}


@dataclass(frozen=True)
class CompositesData:
    """A partition's composites (:func:`read` memory-maps the arrays; see :data:`ARRAYS`), its index
    rows (:data:`COLUMNS`; ``tile``, ``row``, ``col``, ``surface`` int, cover and figures float) and
    its :class:`CompositesSummary`."""

    images: np.ndarray
    masks: np.ndarray
    clouds: np.ndarray
    surfaces: np.ndarray
    index: list[dict]
    summary: CompositesSummary


@dataclass(frozen=True)
class CompositesResult:
    """What :func:`build` made: the partition's folder, its summary and the first tiles (mask,
    cloud, surface, composite) for the preview."""

    path: Path
    summary: CompositesSummary
    sample: tuple[tuple[np.ndarray, ...], ...] = ()
    notes: tuple[str, ...] = ()

    def figures(self) -> dict[str, object]:
        s = self.summary
        figures: dict[str, object] = {
            "count": s.count, "blend": s.blend, "mean_opacity": s.mean_opacity,
            "mean_brightness_change_inside": s.mean_brightness_change_inside, "mean_brightness": s.mean_brightness,
            "surface_pool": s.surface_pool, "surfaces_used": s.surfaces_used, "model_sha256": s.model_sha256,
            "index": self.path / INDEX_FILE}
        if not s.count:
            figures["empty"] = (f"{s.product} has no cloud tiles (no generator inputs in its cover range); "
                                "an empty partition is a valid result")
        return figures

    def preview(self) -> Preview | None:
        if not self.sample:
            return None
        return Preview(grid([list(row) for row in self.sample], 96), "mask | cloud | surface | composite")


def derived_seed(seed: int, key: str) -> int:
    """A per-partition seed: the first 8 bytes of ``sha256("<seed>:<key>")`` as a big-endian integer."""
    digest = new_digest("sha256")
    digest.update(f"{seed}:{key}".encode())
    return int(digest.hexdigest()[:16], 16)


def folder(root: Path, key: str) -> Path:
    """``<root>/composites/<key>``."""
    return asset_dir(root, NAME, key)


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
    return buf.getvalue()


def write(root: Path, key: str, data: CompositesData) -> Path:
    """Write a partition (swapped in whole)."""
    path = folder(root, key)
    with atomic_dir(path) as tmp:
        for name in ARRAYS:
            save_npy(tmp / f"{name}.npy", getattr(data, name))
        write_text(tmp / INDEX_FILE, _csv(data.index))
        write_text(tmp / SUMMARY_FILE, json.dumps(asdict(data.summary), indent=2, sort_keys=True))
    return path


def _row(raw: dict[str, str], where: Path) -> dict:
    row: dict[str, object] = dict(raw)
    try:
        for name in _INT_COLUMNS:
            row[name] = int(raw[name]) if raw[name] != "" else None
        for name in _FLOAT_COLUMNS:
            row[name] = float(raw[name])
    except (KeyError, TypeError, ValueError) as exc:
        raise CloudGANError(f"{where}: unreadable row {raw!r} ({exc})") from None
    return row


def read(root: Path, key: str) -> CompositesData:
    """A partition's composites, index and summary (arrays memory-mapped).

    Raises
    ------
    MissingInputError
        The folder does not exist ("materialize composites for <key> first").
    CloudGANError
        A file is missing or unreadable, or an array's tile count differs from the index (the
        message names the file and says to materialize composites for ``key``).
    """
    path = folder(root, key)
    require_inputs(composites=path)
    for name in (*(f"{a}.npy" for a in ARRAYS), INDEX_FILE, SUMMARY_FILE):
        if not (path / name).is_file():
            raise CloudGANError(f"{path / name}: missing; materialize composites for {key}")
    arrays = {name: np.load(path / f"{name}.npy", mmap_mode="r") for name in ARRAYS}
    with open(path / INDEX_FILE, newline="", encoding="utf-8") as fh:
        index = [_row(r, path / INDEX_FILE) for r in csv.DictReader(fh)]
    for name, arr in arrays.items():
        if len(arr) != len(index):
            raise CloudGANError(f"{path / (name + '.npy')}: {len(arr)} tiles but index.csv has {len(index)} rows; "
                                f"materialize composites for {key} again")
    try:
        raw = json.loads((path / SUMMARY_FILE).read_text(encoding="utf-8"))
        summary = CompositesSummary(**{f.name: raw[f.name] for f in fields(CompositesSummary)})
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CloudGANError(f"{path / SUMMARY_FILE}: unreadable ({type(exc).__name__}: {exc}); materialize "
                            f"composites for {key} again") from None
    return CompositesData(**arrays, index=index, summary=summary)


def build(root: Path, key: str, config: CompositesConfig = CompositesConfig()) -> CompositesResult:
    """Lay the product's generated clouds over surfaces of the pool.

    Surfaces are assigned with :func:`cloudgan_core.composite.assign_surfaces` seeded by
    :func:`derived_seed` ``(config.seed, key)``. With ``blend="alpha"`` every clear pixel equals
    its surface.

    Raises
    ------
    MissingInputError
        The product's synthetic clouds or the surface pool are missing.
    CloudGANError
        Unreadable inputs, an empty pool for a product with clouds, or tile sizes that differ
        between pool and clouds.
    """
    require_inputs(synthetic_clouds=synthetic_clouds.folder(root, key), surface_tiles=surface_tiles.folder(root))
    made = synthetic_clouds.read(root, key)
    clouds, masks = np.asarray(made.clouds), np.asarray(made.masks)
    n = len(clouds)
    pool = surface_tiles.read(root)
    if n and not len(pool.images):
        raise CloudGANError(f"surface pool {surface_tiles.folder(root)} is empty: no cloud-free surface tile to "
                            f"place the {n} cloud tile(s) of {key} on (materialize products with clear tiles, "
                            "set surface_tiles' extra_surface_dir, then re-materialize surface_tiles)")
    if n and pool.images.shape[1:3] != clouds.shape[1:3]:
        raise CloudGANError(f"surface tiles are {pool.images.shape[1]} px but the clouds of {key} are "
                            f"{clouds.shape[1]} px; materialize both with one tile size")
    assignment_seed = derived_seed(config.seed, key)
    products = [str(r.get("product", key)) for r in made.index]
    pick = assign_surfaces(products, [r["product"] for r in pool.index], seed=assignment_seed,
                           prefer_other_product=config.prefer_other_product)
    surfaces = np.asarray(pool.images[pick]) if n else np.zeros((*masks.shape, 3), np.uint8)
    opacity = {"min_opacity": config.min_opacity, "max_opacity": config.max_opacity, "gamma": config.gamma}
    images = composite(surfaces, clouds, masks, blend=config.blend, whiten=config.whiten, **opacity) \
        if n else surfaces.copy()
    stats = composite_stats(images, surfaces, clouds, masks, blend=config.blend, **opacity)
    fractions = masks.reshape(n, -1).mean(axis=1) if n else np.zeros(0)
    index = [{"tile": i, "product": products[i], "row": made.index[i].get("row"), "col": made.index[i].get("col"),
              "cloud_fraction": round(float(fractions[i]), 6), "surface": int(pick[i]),
              "surface_source": pool.index[pick[i]]["source"], "surface_product": pool.index[pick[i]]["product"],
              "mean_opacity": round(float(stats.tile_opacity[i]), 4),
              "brightness_change_inside": round(float(stats.tile_change_inside[i]), 3)} for i in range(n)]
    summary = CompositesSummary(
        product=key, count=n, blend=config.blend, whiten=config.whiten, seed=config.seed, **opacity,
        assignment_seed=assignment_seed, prefer_other_product=config.prefer_other_product,
        surface_pool=len(pool.index), surfaces_used=int(np.unique(pick).size), model_sha256=made.model_sha256,
        model=made.model, clouds_seed=made.seed, mean_opacity=round(stats.mean_opacity, 6),
        mean_brightness_change_inside=round(stats.mean_change_inside, 4),
        mean_brightness=round(stats.mean_brightness, 4))
    path = write(root, key, CompositesData(images, masks, clouds, surfaces, index, summary))
    sample = tuple(tuple(a[i].copy() for a in (masks, clouds, surfaces, images)) for i in range(min(n, PREVIEW_ROWS)))
    return CompositesResult(path, summary, sample)
