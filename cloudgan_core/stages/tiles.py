"""Stage ``tiles``: the scene cut into square tiles, with a measured index; and the tile file format.

Files under ``<root>/tiles/<key>/`` (a *tile group*; ``sorted_tiles`` stores two more)::

    images.npy    uint8 (N, size, size, 3): false colour
    masks.npy     uint8 (N, size, size): 1 = cloud
    bands.npy     float32 (N, 9, size, size): the nine bands (:data:`cloudgan_core.clouds.BANDS`:
                  S1-S6 TOA reflectance, S7-S9 brightness temperature in K, NaN where invalid)
    flags.npy     uint16 (N, size, size): the masks stage's pixel flags
                  (:data:`cloudgan_core.slstr.flags.PIXEL_FLAGS`, bit ``1 << i`` for flag i)
    index.csv     one row per tile, aligned with the arrays: tile, product, row, col, size, the
                  cloud/valid/day/land/snow fractions (0..1) and the mean solar_zenith,
                  solar_azimuth, view_zenith, view_azimuth (degrees); after sorting also bin,
                  surface_candidate and gan_input (True/False)

The index opens with one line of Python::

    import pandas as pd; index = pd.read_csv("storage/tiles/<product>/index.csv")

This module is the one reader and writer of that format: :func:`write_group`/:func:`read_group`
for a group, :func:`write_index`/:func:`read_index` for an index of tile rows (other stages that
keep tile rows, e.g. ``synthetic_clouds``, use these). The slicing science is in
:mod:`cloudgan_core.tiles`, the tile angles in :func:`cloudgan_core.slstr.geometry.tile_angles`.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from cloudgan_core.atomic import atomic_dir, require_inputs, save_npy, write_text
from cloudgan_core.errors import ProductError
from cloudgan_core.preview import side_by_side
from cloudgan_core.slstr.flags import FLAGS_FILE, PIXEL_FLAG_BITS
from cloudgan_core.slstr.geometry import grid_attrs, tile_angles
from cloudgan_core.slstr.product import open_product
from cloudgan_core.stages import false_color, masks, products
from cloudgan_core.stages.base import Preview, csv_text
from cloudgan_core.storage import asset_dir
from cloudgan_core.tiles import DEFAULT_TILE_SIZE, INDEX_COLUMNS, Tiles, check_tile_size, slice_tiles, tile_grid

NAME = "tiles"
IMAGES, MASKS, INDEX = "images.npy", "masks.npy", "index.csv"
BANDS, FLAGS = "bands.npy", "flags.npy"
#: Index columns that stay text when read back (every other value is parsed as a number or a bool).
TEXT_COLUMNS = frozenset({"product", "bin"})
#: Colour of the tile grid drawn on the preview's false colour.
GRID_COLOUR = (255, 200, 0)


class TilesConfig(BaseModel):
    """The tile side."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tile_size: int = Field(DEFAULT_TILE_SIZE, description="tile side in pixels, a positive multiple of 4, at most "
                                                          "the scene's rows and columns")

    @field_validator("tile_size", mode="before")
    @classmethod
    def _tile_size(cls, value: int) -> int:
        return check_tile_size(value)  # before pydantic's int coercion: 6.5 and True are refused by name


# --------------------------------------------------------------------------- the file format


def write_index(path: Path, rows: Sequence[dict]) -> Path:
    """Write tile rows as ``index.csv`` (atomically): the columns of :data:`INDEX_COLUMNS` that the
    rows have, in that order (an empty index gets the first five as its header)."""
    cols = [c for c in INDEX_COLUMNS if c in rows[0]] if rows else list(INDEX_COLUMNS[:5])
    return write_text(path, csv_text(rows, cols))


def _parse(value: str) -> object:
    if value in ("True", "False"):
        return value == "True"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def read_index(path: Path) -> list[dict]:
    """Tile rows from an ``index.csv`` written by :func:`write_index`, numbers and booleans restored."""
    with open(path, newline="", encoding="utf-8") as fh:
        return [{k: (v if k in TEXT_COLUMNS else _parse(v)) for k, v in row.items()} for row in csv.DictReader(fh)]


def write_group(folder: Path, tiles: Tiles) -> Path:
    """Write a tile group (``images.npy``, ``masks.npy``, ``bands.npy`` and ``flags.npy`` when the
    tiles have them, ``index.csv``) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    save_npy(folder / IMAGES, tiles.images)
    save_npy(folder / MASKS, tiles.masks)
    if tiles.bands is not None:
        save_npy(folder / BANDS, tiles.bands)
    if tiles.flags is not None:
        save_npy(folder / FLAGS, tiles.flags)
    write_index(folder / INDEX, tiles.index)
    return folder


def read_group(folder: Path, *, mmap: bool = True, require_bands: bool = False) -> Tiles:
    """A tile group written by :func:`write_group` (arrays memory-mapped unless ``mmap=False``;
    ``bands`` and ``flags`` None when the group has none).

    Raises
    ------
    ProductError
        The arrays and the index disagree in length or tile shape, or (``require_bands``) the group
        has no ``bands.npy``/``flags.npy`` (written by an older version).
    """
    mode = "r" if mmap else None
    extra = {}
    for name, path in (("bands", folder / BANDS), ("flags", folder / FLAGS)):
        if path.is_file():
            extra[name] = np.load(path, mmap_mode=mode)
        elif require_bands:
            raise ProductError(folder, f"{path.name} is missing (tiles written by an older version); materialize "
                                       "tiles and sorted_tiles again")
    tiles = Tiles(np.load(folder / IMAGES, mmap_mode=mode), np.load(folder / MASKS, mmap_mode=mode),
                  read_index(folder / INDEX), **extra)
    arrays = {"images": tiles.images, "masks": tiles.masks, **extra}
    if len({len(a) for a in arrays.values()} | {len(tiles.index)}) != 1:
        counts = ", ".join(f"{len(a)} {name}" for name, a in arrays.items())
        raise ProductError(folder, f"holds {counts} and {len(tiles.index)} index rows; materialize it again")
    side = tiles.masks.shape[1:]
    if (tiles.bands is not None and (tiles.bands.dtype != np.float32 or tiles.bands.shape[2:] != side)) or (
            tiles.flags is not None and (tiles.flags.dtype != np.uint16 or tiles.flags.shape[1:] != side)):
        raise ProductError(folder, f"bands.npy/flags.npy are not float32/uint16 tiles of the masks' {side} pixels; "
                                   "materialize it again")
    return tiles


# --------------------------------------------------------------------------- the stage


@dataclass(frozen=True)
class TilesResult:
    """What :func:`build` wrote: the tiles, and the scene they were cut from (for the preview)."""

    path: Path
    tiles: Tiles
    tile_size: int
    scene: np.ndarray
    cloud: np.ndarray
    notes: tuple[str, ...] = ()

    def figures(self) -> dict[str, object]:
        n = len(self.tiles)

        def mean(column: str) -> float:
            return round(float(np.mean([r[column] for r in self.tiles.index])), 4) if n else 0.0

        return {"tiles": n, "tile_size": self.tile_size, "mean_cloud_fraction": mean("cloud_fraction"),
                "mean_valid_fraction": mean("valid_fraction"), "index": self.path / INDEX}

    def preview(self) -> Preview | None:
        """The false colour and the mask side by side, shrunk, with the tile grid drawn on both."""
        step = max(1, max(self.scene.shape[:2]) // 480)
        image = np.array(self.scene[::step, ::step])
        mask = np.array(self.cloud[::step, ::step]) * np.uint8(255)
        for plane, colour in ((image, GRID_COLOUR), (mask, 255)):
            for r in range(0, self.scene.shape[0], self.tile_size):
                plane[r // step] = colour
            for c in range(0, self.scene.shape[1], self.tile_size):
                plane[:, c // step] = colour
        return Preview(side_by_side([image, mask]), "false colour | mask, with the tile grid", 720)


def folder(root: Path, key: str) -> Path:
    """``<root>/tiles/<key>``."""
    return asset_dir(root, NAME, key)


def write(root: Path, key: str, tiles: Tiles) -> Path:
    """Write the tiles of ``key`` (the folder swapped in whole)."""
    out = folder(root, key)
    with atomic_dir(out) as tmp:
        write_group(tmp, tiles)
    return out


def read(root: Path, key: str) -> Tiles:
    """The stored tiles of ``key`` (arrays memory-mapped), with their bands and flags.

    Raises
    ------
    MissingInputError
        ``tiles`` was not materialized for ``key``.
    ProductError
        The group is inconsistent, or has no bands/flags (written by an older version).
    """
    path = folder(root, key)
    require_inputs(tiles=path)
    return read_group(path, require_bands=True)


def build(root: Path, key: str, config: TilesConfig = TilesConfig()) -> TilesResult:
    """Cut the false colour, the bands and the masks of ``key`` into tiles, and measure each.

    A pixel counts as valid when the masks stage's ``valid`` flag is set (filled, day, solar
    zenith within the limit) and the false-colour stage's ``valid.npy`` says it is finite in all
    nine bands. The mean angles of each tile come from the registered product's tie-point grid
    (:func:`~cloudgan_core.slstr.geometry.tile_angles`).

    Raises
    ------
    MissingInputError
        ``products``, ``false_color`` or ``masks`` was not materialized for ``key``.
    SettingError
        ``tile_size`` is larger than the scene.
    ProductError
        No pixel of the scene is valid, the false colour and the masks differ in size, or the
        product's geometry is unusable. Nothing is written.
    """
    colour = false_color.read(root, key)
    scene_masks = masks.read(root, key)
    flags, visible = scene_masks.flags, np.asarray(colour.valid, dtype=bool)
    if visible.shape != flags.shape:
        raise ProductError(false_color.folder(root, key), f"valid.npy is {visible.shape} but the masks are "
                                                          f"{flags.shape}; materialize masks and false_color again")
    tile_grid(flags.shape, config.tile_size, key)  # a tile size that does not fit fails before the product is read
    with open_product(products.read(root, key)) as product:
        with product.open_netcdf(FLAGS_FILE) as nc:
            grid = grid_attrs(nc.attrs, nc.label)
        angles = tile_angles(product, flags.shape, config.tile_size, image_grid=grid)
    tiles = slice_tiles(colour.image, flags, key, config.tile_size, valid=visible, bands=colour.bands, angles=angles)
    if not np.any(((flags & PIXEL_FLAG_BITS["valid"]) != 0) & visible):
        unfilled, day, sza_ok = ((flags & PIXEL_FLAG_BITS[name]) != 0 for name in ("unfilled", "day", "sza_ok"))
        raise ProductError(false_color.folder(root, key),
                           f"no valid visible pixel in {key}: 0 of {flags.size} pixels are valid (unfilled: "
                           f"{np.count_nonzero(unfilled)}, day bit unset: {np.count_nonzero(~day)}, solar zenith "
                           f"above the limit: {np.count_nonzero(~sza_ok)}, no finite reflectance: "
                           f"{np.count_nonzero(~visible)})")
    return TilesResult(write(root, key, tiles), tiles, config.tile_size, scene=colour.image, cloud=scene_masks.cloud)
