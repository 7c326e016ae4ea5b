"""The ``surface_tiles`` stage: the pool of cloud-free surface tiles the clouds are laid over.

Files (``<root>/surface_tiles/``, one pool for all products):

- ``images.npy``: ``uint8 (N, H, W, 3)`` surface tiles;
- ``index.csv``: one row per tile with the columns of :data:`COLUMNS`: ``surface`` (the tile's
  number), ``source`` (``<product>:<row>:<col>`` or ``user:<file>:<row>:<col>``), ``product``
  (``user`` for the user folder), ``row``, ``col`` (pixels), ``land_fraction`` (empty for user
  tiles) and ``mean_brightness`` (digital numbers).

The pool gathers the ``surface`` tiles of every product's :mod:`~cloudgan_core.stages.sorted_tiles`
and, optionally, a user folder of cloud-free images cut into tiles.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from cloudgan_core.atomic import atomic_dir, require_inputs, save_npy, write_text
from cloudgan_core.composite import brightness
from cloudgan_core.errors import CloudGANError
from cloudgan_core.preview import grid
from cloudgan_core.stages import sorted_tiles
from cloudgan_core.stages.base import Preview
from cloudgan_core.storage import asset_dir
from cloudgan_core.tiles import DEFAULT_TILE_SIZE, check_tile_size

NAME = "surface_tiles"
IMAGES_FILE = "images.npy"
INDEX_FILE = "index.csv"
COLUMNS = ("surface", "source", "product", "row", "col", "land_fraction", "mean_brightness")
#: A surface tile with more than this share of land pixels counts as land, otherwise as ocean.
LAND_SHARE = 0.5
#: Image files read from ``extra_surface_dir``.
USER_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
#: Product name of surface tiles from the user folder (never equal to a Sentinel-3 product id).
USER_PRODUCT = "user"
#: Most images read from ``extra_surface_dir``, and most pixels per image (checked before decoding).
MAX_USER_IMAGES = 10_000
MAX_USER_IMAGE_PIXELS = 100_000_000
#: Tiles in the preview (rows of six).
PREVIEW_TILES = 12


class SurfaceTilesConfig(BaseModel):
    """Where the pool's tiles come from besides the products, and their size."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    extra_surface_dir: Optional[str] = Field(
        None, description="optional folder of cloud-free RGB images (png/jpg/tif, 8 bit); each is cut into "
                          "non-overlapping tiles of the tile size (the ragged remainder is dropped, all-black "
                          "tiles skipped) and added to the pool as product 'user'")
    tile_size: Optional[int] = Field(
        None, description="tile side in pixels; default: that of the sorted tiles (256 when there are none). "
                          "Must match the sorted tiles when both are present.")

    @field_validator("tile_size")
    @classmethod
    def _tile_size(cls, value: Optional[int]) -> Optional[int]:
        return None if value is None else check_tile_size(value)


@dataclass(frozen=True)
class SurfaceTilesData:
    """What :func:`read` returns: ``images`` (memory-mapped) and one ``index`` row per tile
    (``surface``, ``row``, ``col`` int; ``source``, ``product`` str; ``land_fraction`` float or
    None for user tiles; ``mean_brightness`` float)."""

    images: np.ndarray
    index: list[dict]
    bands: np.ndarray | None = None
    flags: np.ndarray | None = None


@dataclass(frozen=True)
class SurfaceTilesResult:
    """What :func:`build` made: the pool's counts (land / ocean by :data:`LAND_SHARE`; user tiles
    are neither), tiles per product, the tiles skipped as all black in the user folder (None without
    one), and the first tiles for the preview."""

    path: Path
    count: int
    land: int
    ocean: int
    user: int
    user_tiles_skipped_black: int | None
    per_product: dict[str, int]
    tile_size: int
    sample: tuple[np.ndarray, ...] = ()
    notes: tuple[str, ...] = ()

    def figures(self) -> dict[str, object]:
        figures: dict[str, object] = {
            "count": self.count, "land": self.land, "ocean": self.ocean, "user": self.user,
            "user_tiles_skipped_black": self.user_tiles_skipped_black, "products": len(self.per_product),
            "tile_size": self.tile_size, "index": self.path / INDEX_FILE, "per_product": dict(self.per_product)}
        if not self.count:
            figures["empty"] = "the surface pool is empty"
        return figures

    def preview(self) -> Preview | None:
        if not self.sample:
            return None
        cells = list(self.sample)
        return Preview(grid([cells[k:k + 6] for k in range(0, len(cells), 6)], 80),
                       f"surface pool: first {len(cells)} of {self.count} tiles", 560)


def folder(root: Path) -> Path:
    """``<root>/surface_tiles``."""
    return asset_dir(root, NAME)


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({**r, "land_fraction": "" if r["land_fraction"] is None else r["land_fraction"]} for r in rows)
    return buf.getvalue()


def write(root: Path, images: np.ndarray, index: list[dict]) -> Path:
    """Write the pool (replacing the old one whole): ``images`` and their ``index`` rows (the keys of
    :data:`COLUMNS`; ``land_fraction`` None for a user tile)."""
    if len(images) != len(index):
        raise CloudGANError(f"surface pool: {len(images)} tiles but {len(index)} index rows")
    path = folder(root)
    with atomic_dir(path) as tmp:
        save_npy(tmp / IMAGES_FILE, images)
        write_text(tmp / INDEX_FILE, _csv(index))
    return path


def _parse(row: dict[str, str], where: Path) -> dict:
    try:
        extra = {k: (float(row[k]) if k != "bands_source" else row[k]) for k in
                 ("solar_zenith", "solar_azimuth", "view_zenith", "view_azimuth", "snow_fraction", "bands_source")
                 if row.get(k) not in (None, "")}
        return {"surface": int(row["surface"]), "source": row["source"], "product": row["product"],
                "row": int(row["row"]), "col": int(row["col"]),
                "land_fraction": float(row["land_fraction"]) if row["land_fraction"] != "" else None,
                "mean_brightness": float(row["mean_brightness"]), **extra}
    except (KeyError, TypeError, ValueError) as exc:
        raise CloudGANError(f"{where}: unreadable row {row!r} ({exc}); materialize surface_tiles again") from None


def read(root: Path) -> SurfaceTilesData:
    """The pool written by :func:`write`.

    Raises
    ------
    MissingInputError
        No pool ("materialize surface_tiles first").
    CloudGANError
        A file is missing or unreadable, or the index and the tiles differ in count.
    """
    path = folder(root)
    require_inputs(surface_tiles=path)
    if not (path / IMAGES_FILE).is_file() or not (path / INDEX_FILE).is_file():
        raise CloudGANError(f"{path}: no surface pool; materialize surface_tiles first")
    with open(path / INDEX_FILE, newline="", encoding="utf-8") as fh:
        index = [_parse(r, path / INDEX_FILE) for r in csv.DictReader(fh)]
    images = np.load(path / IMAGES_FILE, mmap_mode="r")
    if len(index) != len(images):
        raise CloudGANError(f"{path}: index.csv has {len(index)} rows for {len(images)} tiles")
    bands, flags = (np.load(path / f, mmap_mode="r") if (path / f).is_file() else None
                    for f in ("bands.npy", "flags.npy"))
    return SurfaceTilesData(images, index, bands, flags)


@dataclass(frozen=True)
class _UserTiles:
    tiles: list[np.ndarray]
    rows: list[dict]
    skipped_black: int


def _user_tiles(folder_: str | Path, size: int) -> _UserTiles:
    """Cut every image of a user folder (``.png/.jpg/.jpeg/.tif/.tiff``; 8-bit RGB, RGBA, greyscale
    or palette; in name order) into non-overlapping ``size`` tiles from its top-left corner; the
    ragged remainder is dropped and all-black tiles are skipped.

    Raises
    ------
    CloudGANError
        The folder is missing, holds no image or more than :data:`MAX_USER_IMAGES`, or an image is
        unreadable, not 8 bit, larger than :data:`MAX_USER_IMAGE_PIXELS` or smaller than one tile
        (the message names the file).
    """
    from PIL import Image

    where = Path(folder_)
    if not where.is_dir():
        raise CloudGANError(f"{where}: extra_surface_dir is not a folder")
    files = sorted(p for p in where.iterdir() if p.is_file() and p.suffix.lower() in USER_IMAGE_SUFFIXES)
    if not files:
        raise CloudGANError(f"{where}: no images ({', '.join(USER_IMAGE_SUFFIXES)}) in extra_surface_dir")
    if len(files) > MAX_USER_IMAGES:
        raise CloudGANError(f"{where}: {len(files)} images in extra_surface_dir, more than the {MAX_USER_IMAGES} "
                            "allowed; split the folder")
    tiles, rows, skipped = [], [], 0
    for path in files:
        try:
            with Image.open(path) as im:  # reads the header only
                if im.mode not in ("RGB", "RGBA", "L", "P"):
                    raise CloudGANError(f"{path}: image mode {im.mode} is not 8-bit RGB/greyscale; "
                                        "save it as an 8-bit RGB image")
                if im.width * im.height > MAX_USER_IMAGE_PIXELS:
                    raise CloudGANError(f"{path}: image is {im.height} x {im.width} px, more than the "
                                        f"{MAX_USER_IMAGE_PIXELS} pixels allowed; cut it into smaller images")
                arr = np.asarray(im.convert("RGB"))
        except CloudGANError:
            raise
        except Exception as exc:  # PIL raises many kinds for unreadable files
            raise CloudGANError(f"{path}: cannot read as an image ({exc})") from None
        h, w = arr.shape[:2]
        if h < size or w < size:
            raise CloudGANError(f"{path}: image is {h} x {w} px, smaller than one {size} x {size} tile")
        for r in range(0, h - size + 1, size):
            for c in range(0, w - size + 1, size):
                tile = np.ascontiguousarray(arr[r:r + size, c:c + size])
                if not tile.any():
                    skipped += 1
                    continue
                tiles.append(tile)
                rows.append({"source": f"{USER_PRODUCT}:{path.name}:{r}:{c}", "product": USER_PRODUCT,
                             "row": r, "col": c, "land_fraction": None})
    return _UserTiles(tiles, rows, skipped)


def build(root: Path, config: SurfaceTilesConfig = SurfaceTilesConfig(), *,
          products: Sequence[str] = ()) -> SurfaceTilesResult:
    """Pool the clear surface tiles of ``products`` (in product-id order) and the user folder.

    Parameters
    ----------
    root
        Storage root.
    config
        The user folder and the tile size (default: that of the sorted tiles,
        :data:`~cloudgan_core.tiles.DEFAULT_TILE_SIZE` when there are none).
    products
        Product partitions whose sorted tiles are pooled (each must be materialized).

    Raises
    ------
    MissingInputError
        A product's sorted tiles are missing.
    CloudGANError
        Products differ in tile size (or from ``tile_size``), or the user folder is unusable.
    """
    keys = sorted(set(products))
    groups = {k: sorted_tiles.read(root, k).surface for k in keys}
    size = config.tile_size
    size_from = "config" if size else None
    images: list[np.ndarray] = []
    rows: list[dict] = []
    for key, t in groups.items():
        if len(t) == 0:
            continue
        side = int(t.images.shape[1])
        if size is None:
            size, size_from = side, key
        elif side != size:
            raise CloudGANError(f"sorted_tiles/{key}/surface has {side} px tiles but {size_from} has {size} px; "
                                "re-materialize tiles and sorted_tiles with one tile size")
        images += [np.asarray(t.images[i]) for i in range(len(t))]
        rows += [{"source": f"{key}:{r['row']}:{r['col']}", "product": key, "row": r["row"], "col": r["col"],
                  "land_fraction": r["land_fraction"]} for r in t.index]
    size = size or DEFAULT_TILE_SIZE
    user = _user_tiles(config.extra_surface_dir, size) if config.extra_surface_dir else _UserTiles([], [], 0)
    images += user.tiles
    rows += user.rows
    stack = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
    mean_brightness = brightness(stack).reshape(len(stack), -1).mean(axis=1) if len(stack) else np.zeros(0)
    for i, row in enumerate(rows):
        row["surface"] = i
        row["mean_brightness"] = round(float(mean_brightness[i]), 3)
    path = write(root, stack, rows)
    lands = [r["land_fraction"] for r in rows if r["land_fraction"] is not None]
    notes = () if rows else ("the surface pool is empty: no product has a clear surface tile and no "
                             "extra_surface_dir is set; composites cannot be made",)
    return SurfaceTilesResult(
        path, count=len(rows), land=sum(lf > LAND_SHARE for lf in lands), ocean=sum(lf <= LAND_SHARE for lf in lands),
        user=len(user.tiles), user_tiles_skipped_black=user.skipped_black if config.extra_surface_dir else None,
        per_product={k: len(t) for k, t in groups.items()}, tile_size=size,
        sample=tuple(stack[i].copy() for i in range(min(len(stack), PREVIEW_TILES))), notes=notes)
