"""The ``composites`` stage: a product's clouds rendered over surface tiles in nine bands, mask-exact.

Files (``<root>/composites/<key>/``), aligned tile by tile (:data:`ARRAYS`):

- ``images.npy``: ``uint8 (N, H, W, 3)`` false colour of the rendered bands (R = (S3+S5)/2,
  G = S3, B = (S3+S1)/2); outside cloud ∪ shadow the surface tile's own bytes exactly;
- ``masks.npy``: ``uint8 (N, H, W)`` cloud, 1 = cloud (tau > 0);
- ``shadows.npy``: ``uint8 (N, H, W)`` cloud shadow on clear pixels, 1 = shadow (never cloud);
- ``clouds.npy``, ``surfaces.npy``: ``uint8 (N, H, W, 3)`` the cloud's picture and the surface;
- ``bands.npy``, ``surface_bands.npy``: ``float32 (N, 9, H, W)`` the rendered and the surface
  bands (S1-S6 TOA reflectance, S7-S9 brightness temperature K; all NaN for ``blend: original``,
  which has no band model);
- ``surface_flags.npy``: ``uint16 (N, H, W)`` the surface tile's pixel flags (snow/ice, land, ...);
- ``index.csv``: one row per composite with the columns of :data:`COLUMNS`;
- ``composites.json``: the settings and figures (:class:`CompositesSummary`).

Geometry: each cloud is rendered with the SURFACE tile's sun and view angles (the scene the cloud
is laid into); the shadow falls on the anti-solar side at ``h (tan(vza) u(vaa) - tan(sza) u(saa))``
(:mod:`cloudgan_core.clouds.shadows`). Inputs: :mod:`~cloudgan_core.stages.synthetic_clouds` of
the product and the pool of :mod:`~cloudgan_core.stages.surface_tiles`.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cloudgan_core.atomic import atomic_dir, require_inputs, save_npy, write_text
from cloudgan_core.clouds import BANDS
from cloudgan_core.composite import (BLENDS, assign_surfaces, composite_stats, original_blend, render_composites,
                                     tile_geometry)
from cloudgan_core.errors import CloudGANError
from cloudgan_core.preview import grid
from cloudgan_core.settings import SettingError, check_choice
from cloudgan_core.stages import surface_tiles, synthetic_clouds
from cloudgan_core.stages.base import Preview, csv_text, derived_seed
from cloudgan_core.storage import asset_dir

NAME = "composites"
#: The arrays of a partition, one ``<name>.npy`` each, aligned tile by tile.
ARRAYS = ("images", "masks", "shadows", "clouds", "surfaces", "bands", "surface_bands", "surface_flags")
INDEX_FILE = "index.csv"
SUMMARY_FILE = "composites.json"
COLUMNS = ("tile", "product", "row", "col", "cloud_fraction", "shadow_fraction", "surface", "surface_source",
           "surface_product", "bands_source", "solar_zenith", "solar_azimuth", "view_zenith", "view_azimuth",
           "top_height_km", "mean_opacity", "brightness_change_inside")
_INT_COLUMNS = ("tile", "row", "col", "surface")
_FLOAT_COLUMNS = ("cloud_fraction", "shadow_fraction", "solar_zenith", "solar_azimuth", "view_zenith",
                  "view_azimuth", "top_height_km", "mean_opacity", "brightness_change_inside")
#: Settings of earlier versions (the 8-bit alpha blend), refused by name.
REMOVED_SETTINGS = ("min_opacity", "max_opacity", "gamma", "whiten")
#: Rows (mask | cloud | surface | composite | shadow) in the preview.
PREVIEW_ROWS = 4


class CompositesConfig(BaseModel):
    """How the clouds are laid over the surfaces (see :func:`cloudgan_core.composite.render_composites`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    blend: str = Field("render", description="'render': the cloud rendered in nine bands over the surface with the "
                                             "surface's geometry (mask-exact: outside cloud and shadow every pixel "
                                             "is the surface's); 'original': the 2021 CloudGAN's 50 % blend + "
                                             "intensity stretch, for comparison only (changes clear pixels; the "
                                             "checks on composites fail on it)")
    shadows: bool = Field(True, description="cast the clouds' shadows (their own mask, shadows.npy)")
    seed: int = Field(0, description="seed of the surface assignment; each partition uses "
                                     "sha256('<seed>:<product>') so products get different surfaces")
    prefer_other_product: bool = Field(True, description="lay a cloud over a surface from another product "
                                                         "when an unused one is left")

    @model_validator(mode="before")
    @classmethod
    def _removed(cls, values: object) -> object:
        old = sorted(set(values) & set(REMOVED_SETTINGS)) if isinstance(values, dict) else []
        if old:
            raise SettingError(f"{', '.join(old)}: removed with the 8-bit alpha blend (clouds are now rendered in "
                               "nine bands from their optical thickness); delete them from the config")
        return values

    @field_validator("blend")
    @classmethod
    def _blend(cls, value: str) -> str:
        return check_choice("blend", value, BLENDS)


@dataclass(frozen=True)
class CompositesSummary:
    """``composites.json``: the settings a partition was made with and its figures.

    ``assignment_seed`` is :func:`~cloudgan_core.stages.base.derived_seed` ``(seed, product)``;
    ``surface_pool`` and ``surfaces_used`` count the pool's tiles and the distinct ones used;
    ``generator``, ``model``, ``model_sha256`` and ``clouds_seed`` name the cloud generator run; the
    means are over the cloud pixels (opacity, brightness change in digital numbers) and over all
    pixels (``mean_brightness``, ``mean_shadow_fraction``).
    """

    product: str
    count: int
    blend: str
    shadows: bool
    seed: int
    assignment_seed: int
    prefer_other_product: bool
    surface_pool: int
    surfaces_used: int
    generator: str
    model_sha256: str
    model: str | None
    clouds_seed: int | None
    mean_opacity: float
    mean_brightness_change_inside: float
    mean_shadow_fraction: float
    mean_brightness: float

    def settings(self) -> dict[str, object]:
        """The composite settings that must agree across the partitions of one training set."""
        return {"shadows": self.shadows, "seed": self.seed, "generator": self.generator}


@dataclass(frozen=True)
class CompositesData:
    """A partition's composites (:func:`read` memory-maps the arrays; see :data:`ARRAYS`), its index
    rows (:data:`COLUMNS`; ``tile``, ``row``, ``col``, ``surface`` int, angles, cover and figures
    float) and its :class:`CompositesSummary`."""

    images: np.ndarray
    masks: np.ndarray
    shadows: np.ndarray
    clouds: np.ndarray
    surfaces: np.ndarray
    bands: np.ndarray
    surface_bands: np.ndarray
    surface_flags: np.ndarray
    index: list[dict]
    summary: CompositesSummary


@dataclass(frozen=True)
class CompositesResult:
    """What :func:`build` made: the partition's folder, its summary and the first tiles (mask,
    cloud, surface, composite, shadow) for the preview."""

    path: Path
    summary: CompositesSummary
    sample: tuple[tuple[np.ndarray, ...], ...] = ()
    notes: tuple[str, ...] = ()

    def figures(self) -> dict[str, object]:
        s = self.summary
        figures: dict[str, object] = {
            "count": s.count, "blend": s.blend, "shadows": s.shadows, "generator": s.generator,
            "mean_opacity": s.mean_opacity, "mean_brightness_change_inside": s.mean_brightness_change_inside,
            "mean_shadow_fraction": s.mean_shadow_fraction, "mean_brightness": s.mean_brightness,
            "surface_pool": s.surface_pool, "surfaces_used": s.surfaces_used, "model_sha256": s.model_sha256,
            "index": self.path / INDEX_FILE}
        if not s.count:
            figures["empty"] = (f"{s.product} has no cloud tiles (no generator inputs in its cover range); "
                                "an empty partition is a valid result")
        return figures

    def preview(self) -> Preview | None:
        if not self.sample:
            return None
        return Preview(grid([list(row) for row in self.sample], 96), "mask | cloud | surface | composite | shadow")


def folder(root: Path, key: str) -> Path:
    """``<root>/composites/<key>``."""
    return asset_dir(root, NAME, key)


def write(root: Path, key: str, data: CompositesData) -> Path:
    """Write a partition (swapped in whole)."""
    path = folder(root, key)
    with atomic_dir(path) as tmp:
        for name in ARRAYS:
            save_npy(tmp / f"{name}.npy", getattr(data, name))
        write_text(tmp / INDEX_FILE, csv_text(data.index, COLUMNS))
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
    """Render the product's clouds over surfaces of the pool.

    Surfaces are assigned with :func:`cloudgan_core.composite.assign_surfaces` seeded by
    :func:`~cloudgan_core.stages.base.derived_seed` ``(config.seed, key)``. With ``blend="render"``
    every pixel outside cloud ∪ shadow equals its surface byte for byte.

    Raises
    ------
    MissingInputError
        The product's synthetic clouds or the surface pool are missing.
    CloudGANError
        Unreadable inputs, an empty pool for a product with clouds, a pool without bands, flags or
        angles (materialized before the nine-band pipeline), or tile sizes that differ between
        pool and clouds.
    """
    require_inputs(synthetic_clouds=synthetic_clouds.folder(root, key), surface_tiles=surface_tiles.folder(root))
    made = synthetic_clouds.read(root, key)
    clouds, masks = np.asarray(made.clouds), np.asarray(made.masks)
    n = len(clouds)
    pool = surface_tiles.read(root)
    pool_dir = surface_tiles.folder(root)
    if n and not len(pool.images):
        raise CloudGANError(f"surface pool {pool_dir} is empty: no cloud-free surface tile to "
                            f"place the {n} cloud tile(s) of {key} on (materialize products with clear tiles, "
                            "set surface_tiles' extra_surface_dir, then re-materialize surface_tiles)")
    if n and pool.images.shape[1:3] != clouds.shape[1:3]:
        raise CloudGANError(f"surface tiles are {pool.images.shape[1]} px but the clouds of {key} are "
                            f"{clouds.shape[1]} px; materialize both with one tile size")
    if n and (pool.bands is None or pool.flags is None):
        raise CloudGANError(f"surface pool {pool_dir} has no bands.npy or flags.npy (made before the nine-band "
                            "pipeline); materialize tiles, sorted_tiles and surface_tiles again")
    assignment_seed = derived_seed(config.seed, key)
    products = [str(r.get("product", key)) for r in made.index]
    pick = assign_surfaces(products, [r["product"] for r in pool.index], seed=assignment_seed,
                           prefer_other_product=config.prefer_other_product)
    shape = masks.shape[1:] if masks.ndim == 3 else (0, 0)
    surfaces = np.asarray(pool.images[pick]) if n else np.zeros((0, *shape, 3), np.uint8)
    surface_bands = np.asarray(pool.bands[pick], np.float32) if n else np.zeros((0, len(BANDS), *shape), np.float32)
    surface_flags = np.asarray(pool.flags[pick], np.uint16) if n else np.zeros((0, *shape), np.uint16)
    geometries = [tile_geometry(pool.index[p], f"{pool_dir / surface_tiles.INDEX_FILE} surface {int(p)}")
                  for p in pick]
    heights = [float(r["top_height_km"]) for r in made.index]
    if config.blend == "render":
        try:
            rendered = render_composites(surface_bands, surfaces, np.asarray(made.tau), heights, geometries,
                                         shadows=config.shadows)
        except CloudGANError as exc:
            raise CloudGANError(f"composites of {key}: {exc}") from None
        images, bands, shadows, opacity = rendered.images, rendered.bands, rendered.shadow, rendered.opacity
    else:
        images = original_blend(surfaces, clouds) if n else surfaces.copy()
        bands = np.full(surface_bands.shape, np.nan, np.float32)
        shadows = np.zeros(masks.shape, np.uint8)
        opacity = np.where(masks == 1, np.float32(0.5), np.float32(0.0))
    stats = composite_stats(images, surfaces, masks, opacity, shadows)
    fractions = masks.reshape(n, -1).mean(axis=1) if n else np.zeros(0)
    index = []
    for i in range(n):
        surface_row = pool.index[pick[i]]
        index.append({
            "tile": i, "product": products[i], "row": made.index[i].get("row"), "col": made.index[i].get("col"),
            "cloud_fraction": round(float(fractions[i]), 6),
            "shadow_fraction": round(float(stats.tile_shadow_fraction[i]), 6), "surface": int(pick[i]),
            "surface_source": surface_row["source"], "surface_product": surface_row["product"],
            "bands_source": surface_row.get("bands_source") or "product",
            **{c: getattr(geometries[i], c) for c in ("solar_zenith", "solar_azimuth", "view_zenith",
                                                      "view_azimuth")},
            "top_height_km": heights[i], "mean_opacity": round(float(stats.tile_opacity[i]), 4),
            "brightness_change_inside": round(float(stats.tile_change_inside[i]), 3)})
    summary = CompositesSummary(
        product=key, count=n, blend=config.blend, shadows=config.shadows, seed=config.seed,
        assignment_seed=assignment_seed, prefer_other_product=config.prefer_other_product,
        surface_pool=len(pool.index), surfaces_used=int(np.unique(pick).size), generator=made.generator,
        model_sha256=made.model_sha256, model=made.model, clouds_seed=made.seed,
        mean_opacity=round(stats.mean_opacity, 6), mean_brightness_change_inside=round(stats.mean_change_inside, 4),
        mean_shadow_fraction=round(stats.mean_shadow_fraction, 6), mean_brightness=round(stats.mean_brightness, 4))
    data = CompositesData(images, masks, shadows, clouds, surfaces, bands, surface_bands, surface_flags, index,
                          summary)
    path = write(root, key, data)
    sample = tuple(tuple(a[i].copy() for a in (masks, clouds, surfaces, images, shadows))
                   for i in range(min(n, PREVIEW_ROWS)))
    return CompositesResult(path, summary, sample)
