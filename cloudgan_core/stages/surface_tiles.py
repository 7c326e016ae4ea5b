"""The ``surface_tiles`` stage: the pool of cloud-free surface tiles the clouds are laid over.

Files (``<root>/surface_tiles/``, one pool for all products):

- ``images.npy``: ``uint8 (N, H, W, 3)`` surface tiles (false colour);
- ``bands.npy``: ``float32 (N, 9, H, W)`` their nine bands (:data:`cloudgan_core.clouds.BANDS`:
  S1-S6 TOA reflectance, S7-S9 brightness temperature in K);
- ``flags.npy``: ``uint16 (N, H, W)`` their pixel flags (:data:`cloudgan_core.slstr.flags.PIXEL_FLAGS`);
- ``index.csv``: one row per tile with the columns of :data:`COLUMNS`: ``surface`` (the tile's
  number), ``source`` (``<product>:<row>:<col>`` or ``user:<file>:<row>:<col>``), ``product``
  (``user`` for the user folder), ``row``, ``col`` (pixels), ``land_fraction`` (empty for user
  tiles), ``mean_brightness`` (digital numbers), ``snow_fraction`` (empty for user tiles), the
  mean ``solar_zenith``, ``solar_azimuth``, ``view_zenith``, ``view_azimuth`` (degrees) and
  ``bands_source``: ``product`` (measured) or ``rgb`` (approximated from a user image).

The pool gathers the ``surface`` tiles of every product's :mod:`~cloudgan_core.stages.sorted_tiles`
(snow and ice included) and, optionally, a user folder of cloud-free images cut into tiles. A user
image is RGB only: its bands are an approximation (:func:`approximate_bands`), its angles the
``user_*`` settings, and its flags say day, valid and nothing of land, ocean or snow.

The arrays are written a source at a time (never stacked in memory), so the pool may be larger
than the memory.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from cloudgan_core.atomic import atomic_dir, atomic_path, require_inputs, write_text
from cloudgan_core.clouds.bands import BANDS, MAX_SOLAR_ZENITH, MAX_VIEW_ZENITH, THERMAL_RANGE_K
from cloudgan_core.composite import brightness
from cloudgan_core.errors import CloudGANError
from cloudgan_core.preview import grid
from cloudgan_core.settings import check_between
from cloudgan_core.slstr.flags import PIXEL_FLAG_BITS
from cloudgan_core.stages import sorted_tiles
from cloudgan_core.stages.base import Preview, csv_text
from cloudgan_core.storage import asset_dir
from cloudgan_core.tiles import ANGLE_COLUMNS, DEFAULT_TILE_SIZE, check_tile_size

NAME = "surface_tiles"
IMAGES_FILE = "images.npy"
BANDS_FILE = "bands.npy"
FLAGS_FILE = "flags.npy"
INDEX_FILE = "index.csv"
COLUMNS = ("surface", "source", "product", "row", "col", "land_fraction", "mean_brightness", "snow_fraction",
           *ANGLE_COLUMNS, "bands_source")
#: ``bands_source`` of tiles measured in a product, and of tiles approximated from a user's RGB image.
FROM_PRODUCT, FROM_RGB = "product", "rgb"
#: Pixel flags of a user tile: daytime and valid (nothing is known of land, ocean or snow).
USER_FLAGS = PIXEL_FLAG_BITS["day"] | PIXEL_FLAG_BITS["sza_ok"] | PIXEL_FLAG_BITS["valid"]
#: Reflectance given to S4 (1.375 um, absorbed by water vapour: dark over any surface) of a user tile.
USER_S4_REFLECTANCE = 0.01
#: S6 (2.25 um) of a user tile as a share of its S5 (1.61 um), typical of vegetation and soil.
USER_S6_PER_S5 = 0.6
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
    """Where the pool's tiles come from besides the products, their size, and what a user image's
    bands and angles are taken to be."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    extra_surface_dir: Optional[str] = Field(
        None, description="optional folder of cloud-free RGB images (png/jpg/tif, 8 bit); each is cut into "
                          "non-overlapping tiles of the tile size (the ragged remainder is dropped, all-black "
                          "tiles skipped) and added to the pool as product 'user', with bands approximated from "
                          "the RGB (bands_source 'rgb')")
    tile_size: Optional[int] = Field(
        None, description="tile side in pixels; default: that of the sorted tiles (256 when there are none). "
                          "Must match the sorted tiles when both are present.")
    user_surface_temperature_k: float = Field(
        288.0, description="brightness temperature (K) given to S7-S9 of user tiles, within "
                           f"[{THERMAL_RANGE_K[0]:g}, {THERMAL_RANGE_K[1]:g}]")
    user_solar_zenith: float = Field(45.0, description=f"solar zenith (deg, 0-{MAX_SOLAR_ZENITH:g}) of user tiles")
    user_solar_azimuth: float = Field(135.0, description="solar azimuth (deg clockwise from north, 0-360) of user "
                                                         "tiles")
    user_view_zenith: float = Field(15.0, description=f"view zenith (deg, 0-{MAX_VIEW_ZENITH:g}) of user tiles")
    user_view_azimuth: float = Field(100.0, description="view azimuth (deg clockwise from north, 0-360) of user "
                                                        "tiles")

    @field_validator("tile_size")
    @classmethod
    def _tile_size(cls, value: Optional[int]) -> Optional[int]:
        return None if value is None else check_tile_size(value)

    @field_validator("user_surface_temperature_k")
    @classmethod
    def _temperature(cls, value: float) -> float:
        return check_between("user_surface_temperature_k", value, *THERMAL_RANGE_K, unit="K")

    @field_validator("user_solar_zenith", "user_view_zenith", "user_solar_azimuth", "user_view_azimuth")
    @classmethod
    def _angle(cls, value: float, info: ValidationInfo) -> float:
        high = {"user_solar_zenith": MAX_SOLAR_ZENITH, "user_view_zenith": MAX_VIEW_ZENITH}.get(info.field_name, 360.0)
        return check_between(info.field_name, value, 0.0, high, unit="degrees")

    def user_angles(self) -> dict[str, float]:
        """The angles of a user tile, by index column."""
        return {"solar_zenith": self.user_solar_zenith, "solar_azimuth": self.user_solar_azimuth,
                "view_zenith": self.user_view_zenith, "view_azimuth": self.user_view_azimuth}


@dataclass(frozen=True)
class SurfaceTilesData:
    """What :func:`read` returns: ``images``, ``bands`` and ``flags`` (memory-mapped) and one
    ``index`` row per tile (``surface``, ``row``, ``col`` int; ``source``, ``product``,
    ``bands_source`` str; ``land_fraction``, ``snow_fraction`` float or None for user tiles;
    ``mean_brightness`` and the four angles float)."""

    images: np.ndarray
    index: list[dict]
    bands: np.ndarray
    flags: np.ndarray


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


#: Tiles: one array, or the arrays of several sources to be written one after the other.
Chunks = np.ndarray | Sequence[np.ndarray]


def _chunks(arrays: Chunks) -> list[np.ndarray]:
    return [arrays] if isinstance(arrays, np.ndarray) else list(arrays)


def _save_chunks(path: Path, chunks: list[np.ndarray], dtype: type, tail: tuple[int, ...]) -> None:
    """Write ``chunks`` as one ``.npy`` of ``dtype`` (the bytes :func:`numpy.save` writes for their
    concatenation), a chunk at a time, under a temporary name."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
              "shape": (sum(len(c) for c in chunks), *tail)}
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        for chunk in chunks:
            if chunk.size:
                fh.write(memoryview(np.ascontiguousarray(chunk, dtype=dtype)).cast("B"))


def write(root: Path, images: Chunks, index: list[dict], bands: Chunks, flags: Chunks) -> Path:
    """Write the pool (replacing the old one whole): ``images``, ``bands``, ``flags`` and their
    ``index`` rows (the keys of :data:`COLUMNS`; ``land_fraction``/``snow_fraction`` None for a
    user tile). Each array may be given as one array or as a sequence of per-source arrays, which
    are written one after the other without being stacked in memory.

    Raises
    ------
    CloudGANError
        The arrays and the index differ in count, or the tiles in shape.
    """
    parts = {"images": _chunks(images), "bands": _chunks(bands), "flags": _chunks(flags)}
    counts = {name: sum(len(c) for c in chunks) for name, chunks in parts.items()}
    if set(counts.values()) != {len(index)}:
        raise CloudGANError(f"surface pool: {len(index)} index rows but "
                            + ", ".join(f"{n} {name}" for name, n in counts.items()))
    if not parts["images"]:
        raise CloudGANError("surface pool: no images array given (an empty pool is a (0, H, W, 3) array)")
    side = parts["images"][0].shape[1:3]
    tails = {"images": (*side, 3), "bands": (len(BANDS), *side), "flags": side}
    for name, chunks in parts.items():
        bad = [c.shape[1:] for c in chunks if len(c) and c.shape[1:] != tails[name]]
        if bad:
            raise CloudGANError(f"surface pool: {name} tiles of shape {bad[0]}, expected {tails[name]}")
    path = folder(root)
    with atomic_dir(path) as tmp:
        _save_chunks(tmp / IMAGES_FILE, parts["images"], np.uint8, tails["images"])
        _save_chunks(tmp / BANDS_FILE, parts["bands"], np.float32, tails["bands"])
        _save_chunks(tmp / FLAGS_FILE, parts["flags"], np.uint16, tails["flags"])
        write_text(tmp / INDEX_FILE, csv_text(index, COLUMNS))
    return path


def _optional(value: str) -> float | None:
    return float(value) if value != "" else None


def _parse(row: dict[str, str], where: Path) -> dict:
    try:
        return {"surface": int(row["surface"]), "source": row["source"], "product": row["product"],
                "row": int(row["row"]), "col": int(row["col"]), "land_fraction": _optional(row["land_fraction"]),
                "mean_brightness": float(row["mean_brightness"]), "snow_fraction": _optional(row["snow_fraction"]),
                **{c: float(row[c]) for c in ANGLE_COLUMNS}, "bands_source": row["bands_source"]}
    except (KeyError, TypeError, ValueError) as exc:
        raise CloudGANError(f"{where}: unreadable row {row!r} ({exc}); materialize surface_tiles again") from None


def read(root: Path) -> SurfaceTilesData:
    """The pool written by :func:`write`.

    Raises
    ------
    MissingInputError
        No pool ("materialize surface_tiles first").
    CloudGANError
        A file is missing or unreadable (a pool written by an older version has no bands), or the
        index and the arrays differ in count.
    """
    path = folder(root)
    require_inputs(surface_tiles=path)
    if not (path / IMAGES_FILE).is_file() or not (path / INDEX_FILE).is_file():
        raise CloudGANError(f"{path}: no surface pool; materialize surface_tiles first")
    for name in (BANDS_FILE, FLAGS_FILE):
        if not (path / name).is_file():
            raise CloudGANError(f"{path}: {name} is missing (a pool written by an older version); materialize "
                                "surface_tiles again")
    with open(path / INDEX_FILE, newline="", encoding="utf-8") as fh:
        index = [_parse(r, path / INDEX_FILE) for r in csv.DictReader(fh)]
    images = np.load(path / IMAGES_FILE, mmap_mode="r")
    bands = np.load(path / BANDS_FILE, mmap_mode="r")
    flags = np.load(path / FLAGS_FILE, mmap_mode="r")
    if not len(index) == len(images) == len(bands) == len(flags):
        raise CloudGANError(f"{path}: index.csv has {len(index)} rows for {len(images)} tiles, {len(bands)} bands "
                            f"and {len(flags)} flags; materialize surface_tiles again")
    return SurfaceTilesData(images, index, bands, flags)


def approximate_bands(images: np.ndarray, temperature_k: float) -> np.ndarray:
    """Nine bands (float32 ``(N, 9, H, W)``) approximated from RGB false-colour tiles (uint8 ``(N, H, W, 3)``).

    An approximation for user images, which have no bands: the inverse of the false-colour recipe
    (R = (S3+S5)/2, G = S3, B = (S3+S1)/2, x255) with made-up values for what RGB cannot tell::

        S3 = G/255,  S5 = max(2R/255 - S3, 0),  S1 = max(2B/255 - S3, 0),
        S2 = (S1 + S3)/2,  S4 = 0.01,  S6 = 0.6 S5,  S7 = S8 = S9 = temperature_k

    The false colour of these bands gives the image back (to rounding) wherever 2R >= G and
    2B >= G. S2, S4, S6 and the thermal bands are guesses (a flat surface temperature, no
    spectral detail), so the cloud/snow contrasts a model learns from real tiles are not in them:
    such tiles are marked ``bands_source = rgb`` in the index.
    """
    rgb = images.astype(np.float32) / np.float32(255.0)
    out = np.empty((len(images), len(BANDS), *images.shape[1:3]), np.float32)
    s3 = rgb[..., 1]
    out[:, 2] = s3
    out[:, 4] = np.maximum(2.0 * rgb[..., 0] - s3, 0.0)
    out[:, 0] = np.maximum(2.0 * rgb[..., 2] - s3, 0.0)
    out[:, 1] = (out[:, 0] + s3) * np.float32(0.5)
    out[:, 3] = np.float32(USER_S4_REFLECTANCE)
    out[:, 5] = out[:, 4] * np.float32(USER_S6_PER_S5)
    out[:, 6:] = np.float32(temperature_k)
    return out


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
        The user folder, the tile size (default: that of the sorted tiles,
        :data:`~cloudgan_core.tiles.DEFAULT_TILE_SIZE` when there are none) and the temperature and
        angles given to user tiles.
    products
        Product partitions whose sorted tiles are pooled (each must be materialized).

    Raises
    ------
    MissingInputError
        A product's sorted tiles are missing.
    CloudGANError
        Products differ in tile size (or from ``tile_size``), a product's surface tiles have no
        bands, flags or angles (sorted tiles of an older version), or the user folder is unusable.
    """
    keys = sorted(set(products))
    groups = {k: sorted_tiles.read(root, k).surface for k in keys}
    size = config.tile_size
    size_from = "config" if size else None
    images: list[np.ndarray] = []
    bands: list[np.ndarray] = []
    flags: list[np.ndarray] = []
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
        missing = [c for c in ANGLE_COLUMNS if c not in t.index[0]]
        if t.bands is None or t.flags is None or missing:
            raise CloudGANError(f"sorted_tiles/{key}/surface has no {'bands/flags' if not missing else missing[0]} "
                                f"(written by an older version); materialize tiles and sorted_tiles for {key} again")
        images.append(t.images)
        bands.append(t.bands)
        flags.append(t.flags)
        rows += [{"source": f"{key}:{r['row']}:{r['col']}", "product": key, "row": r["row"], "col": r["col"],
                  "land_fraction": r["land_fraction"], "snow_fraction": r["snow_fraction"],
                  **{c: r[c] for c in ANGLE_COLUMNS}, "bands_source": FROM_PRODUCT} for r in t.index]
    size = size or DEFAULT_TILE_SIZE
    user = _user_tiles(config.extra_surface_dir, size) if config.extra_surface_dir else _UserTiles([], [], 0)
    if user.tiles:
        stack = np.stack(user.tiles)
        images.append(stack)
        bands.append(approximate_bands(stack, config.user_surface_temperature_k))
        flags.append(np.full(stack.shape[:3], USER_FLAGS, np.uint16))
        rows += [{**r, "snow_fraction": None, **config.user_angles(), "bands_source": FROM_RGB} for r in user.rows]
    mean_brightness = [m for chunk in images for m in _mean_brightness(chunk)]
    for i, row in enumerate(rows):
        row["surface"] = i
        row["mean_brightness"] = round(float(mean_brightness[i]), 3)
    empty = np.zeros((0, size, size, 3), np.uint8)
    path = write(root, images or empty, rows, bands or np.zeros((0, len(BANDS), size, size), np.float32),
                 flags or np.zeros((0, size, size), np.uint16))
    lands = [r["land_fraction"] for r in rows if r["land_fraction"] is not None]
    notes = () if rows else ("the surface pool is empty: no product has a clear surface tile and no "
                             "extra_surface_dir is set; composites cannot be made",)
    sample = tuple(np.array(tile) for chunk in images for tile in chunk[:PREVIEW_TILES])[:PREVIEW_TILES]
    return SurfaceTilesResult(
        path, count=len(rows), land=sum(lf > LAND_SHARE for lf in lands), ocean=sum(lf <= LAND_SHARE for lf in lands),
        user=len(user.tiles), user_tiles_skipped_black=user.skipped_black if config.extra_surface_dir else None,
        per_product={k: len(t) for k, t in groups.items()}, tile_size=size, sample=sample, notes=notes)


def _mean_brightness(images: np.ndarray, batch: int = 64) -> Iterable[float]:
    """Mean :func:`~cloudgan_core.composite.brightness` of each tile, a batch of tiles at a time."""
    for start in range(0, len(images), batch):
        yield from brightness(np.asarray(images[start:start + batch])).reshape(
            min(batch, len(images) - start), -1).mean(axis=1).tolist()
