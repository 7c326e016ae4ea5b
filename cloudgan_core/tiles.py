"""Cut a scene into square tiles, measure each tile, sort tiles into cloud-cover bins.

Tiles are kept as arrays (``images`` N x H x W x 3 uint8, ``masks`` N x H x W uint8 with 1 = cloud,
optionally ``bands`` N x 9 x H x W float32 and ``flags`` N x H x W uint16) next to an index (one
row per tile, the keys of :data:`INDEX_COLUMNS`). How tiles are stored (``images.npy``,
``masks.npy``, ``bands.npy``, ``flags.npy``, ``index.csv``) is the business of
:mod:`cloudgan_core.stages.tiles`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from numbers import Integral

import numpy as np

from cloudgan_core.cover import CoverRange
from cloudgan_core.settings import SettingError, check_fraction
from cloudgan_core.slstr.flags import PIXEL_FLAG_BITS

DEFAULT_TILE_SIZE = 256
DEFAULT_BIN_EDGES: tuple[float, ...] = (0.0, 10.0, 95.0, 100.0)
FRACTION_FLAGS = ("cloud", "valid", "day", "land", "snow")
#: Mean angles of a tile, degrees (see :func:`cloudgan_core.slstr.geometry.tile_angles`).
ANGLE_COLUMNS = ("solar_zenith", "solar_azimuth", "view_zenith", "view_azimuth")
INDEX_COLUMNS = ("tile", "product", "row", "col", "size", "cloud_fraction", "valid_fraction", "day_fraction",
                 "land_fraction", "snow_fraction", *ANGLE_COLUMNS, "bin", "surface_candidate", "gan_input")
#: Decimals the mean angles are kept to in the index (1e-4 deg).
ANGLE_DECIMALS = 4


@dataclass(frozen=True)
class Tiles:
    """Tiles of one or more scenes.

    Attributes
    ----------
    images
        uint8 (N, H, W, 3) false colour.
    masks
        uint8 (N, H, W); 1 = cloud, 0 = clear.
    index
        One dict per tile with the keys of :data:`INDEX_COLUMNS` (those known so far).
    bands
        float32 (N, 9, H, W) in the order of :data:`cloudgan_core.clouds.BANDS`: S1-S6 TOA
        reflectance, S7-S9 brightness temperature in K, NaN where invalid; None when not kept.
    flags
        uint16 (N, H, W) bits of :data:`cloudgan_core.slstr.flags.PIXEL_FLAGS`; None when not kept.
    """

    images: np.ndarray
    masks: np.ndarray
    index: list[dict]
    bands: np.ndarray | None = None
    flags: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.index)

    def take(self, rows: Sequence[int] | np.ndarray) -> Tiles:
        """The tiles at positions ``rows``, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        return Tiles(self.images[rows], self.masks[rows], [self.index[i] for i in rows],
                     bands=None if self.bands is None else self.bands[rows],
                     flags=None if self.flags is None else self.flags[rows])


def check_tile_size(size: int) -> int:
    """Tile sides must be a positive multiple of 4 (the generator down/up-samples twice).

    Raises
    ------
    SettingError
        ``"tile_size must be a positive multiple of 4, got 30"``.
    """
    if isinstance(size, bool) or not isinstance(size, Integral) or size <= 0 or size % 4:
        raise SettingError(f"tile_size must be a positive multiple of 4, got {size!r}")
    return int(size)


def check_bin_edges(edges: Sequence[float]) -> list[float]:
    """Cover-bin edges in percent: at least two, increasing strictly from 0 to 100.

    Returns the edges as floats; raises :class:`SettingError` otherwise (a bin set that does not
    span 0..100 would leave tiles outside every bin, or label them with a bin they are not in).
    """
    values = [float(e) for e in edges]
    if (len(values) < 2 or values[0] != 0.0 or values[-1] != 100.0
            or any(not b > a for a, b in zip(values[:-1], values[1:]))):
        raise SettingError(f"bin edges must increase strictly from 0 to 100 (percent), got {values}")
    return values


def _block_mean(plane: np.ndarray, size: int, nr: int, nc: int) -> np.ndarray:
    view = plane[: nr * size, : nc * size].reshape(nr, size, nc, size)
    return view.sum(axis=(1, 3), dtype=np.int64).reshape(-1) / float(size * size)


def tile_grid(shape: tuple[int, ...], size: int, product: str) -> tuple[int, int]:
    """``(rows, columns)`` of ``size`` tiles that fit in a scene of ``shape`` (the ragged remainder
    is dropped).

    Raises
    ------
    SettingError
        ``size`` is not a positive multiple of 4, or no tile fits in the scene of ``product``.
    """
    check_tile_size(size)
    nr, nc = shape[0] // size, shape[1] // size
    if nr == 0 or nc == 0:
        raise SettingError(f"tile_size {size} is larger than the scene {shape[0]} x {shape[1]} of {product}: no "
                           "tile fits")
    return nr, nc


def _tile_view(plane: np.ndarray, size: int, nr: int, nc: int) -> np.ndarray:
    """``plane`` (rows, cols, ...) seen as ``(nr, nc, size, size, ...)`` tiles (no copy)."""
    return plane[: nr * size, : nc * size].reshape(nr, size, nc, size, *plane.shape[2:]).swapaxes(1, 2)


def _cut(plane: np.ndarray, size: int, nr: int, nc: int) -> np.ndarray:
    """``(nr * nc, size, size, ...)`` tiles of ``plane`` (rows, cols, ...), row by row, in a new array."""
    out = np.empty((nr * nc, size, size, *plane.shape[2:]), plane.dtype)
    out.reshape(nr, nc, size, size, *plane.shape[2:])[...] = _tile_view(plane, size, nr, nc)
    return out


def slice_tiles(image: np.ndarray, flags: np.ndarray, product: str, size: int = DEFAULT_TILE_SIZE, *,
                valid: np.ndarray | None = None, bands: np.ndarray | None = None,
                angles: dict[str, np.ndarray] | None = None) -> Tiles:
    """Cut a false-colour image, its pixel flags and optionally its bands into tiles.

    Parameters
    ----------
    image
        uint8 (rows, cols, 3).
    flags
        uint16 (rows, cols) bit field of :data:`cloudgan_core.slstr.flags.PIXEL_FLAGS`.
    product
        Product id stored in the index.
    size
        Tile side in pixels (multiple of 4).
    valid
        Optional bool/uint8 (rows, cols): where the image itself is usable (finite reflectance in
        every band, the false-colour stage's ``valid.npy``). A pixel counts as valid in
        ``valid_fraction`` only when both its ``valid`` flag and this are set.
    bands
        Optional float32 (9, rows, cols): cut into the tiles' ``bands``; the tiles then also get
        their ``flags``.
    angles
        Optional mean angles per tile (the keys of :data:`ANGLE_COLUMNS`, each ``(N,)`` in tile
        order, degrees; :func:`cloudgan_core.slstr.geometry.tile_angles`), put into the index
        rounded to :data:`ANGLE_DECIMALS`.

    Raises
    ------
    SettingError
        ``size`` is not a positive multiple of 4, or no tile fits in the scene.
    """
    if image.shape[:2] != flags.shape:
        raise ValueError(f"image {image.shape[:2]} and flags {flags.shape} differ in size")
    if valid is not None and valid.shape != flags.shape:
        raise ValueError(f"valid {valid.shape} and flags {flags.shape} differ in size")
    if bands is not None and (bands.ndim != 3 or bands.shape[1:] != flags.shape):
        raise ValueError(f"bands {bands.shape} are not (bands, rows, cols) of flags {flags.shape}")
    nr, nc = tile_grid(flags.shape, size, product)
    n = nr * nc
    if angles is not None and any(len(angles[c]) != n for c in ANGLE_COLUMNS):
        raise ValueError(f"angles {[len(angles[c]) for c in ANGLE_COLUMNS]} do not give one value for each of {n} tiles")
    images = _cut(image, size, nr, nc)
    cloud = ((flags & PIXEL_FLAG_BITS["cloud"]) != 0).view(np.uint8)
    masks = _cut(cloud, size, nr, nc)
    tile_bands = tile_flags = None
    if bands is not None:
        tile_bands = np.empty((n, bands.shape[0], size, size), np.float32)
        for b in range(bands.shape[0]):  # one plane at a time, straight into place
            tile_bands[:, b].reshape(nr, nc, size, size)[...] = _tile_view(bands[b], size, nr, nc)
        tile_flags = _cut(flags, size, nr, nc)
    planes = {name: (flags & PIXEL_FLAG_BITS[name]) != 0 for name in FRACTION_FLAGS}
    if valid is not None:
        planes["valid"] &= np.asarray(valid, dtype=bool)
    fractions = {name: _block_mean(plane.view(np.uint8), size, nr, nc) for name, plane in planes.items()}
    index = []
    for k in range(n):
        index.append({
            "tile": k, "product": product, "row": (k // nc) * size, "col": (k % nc) * size, "size": size,
            **{f"{name}_fraction": round(float(fractions[name][k]), 6) for name in FRACTION_FLAGS},
            **({} if angles is None else {c: round(float(angles[c][k]), ANGLE_DECIMALS) for c in ANGLE_COLUMNS}),
        })
    return Tiles(images, masks, index, bands=tile_bands, flags=tile_flags)


def bin_label(lo: float, hi: float) -> str:
    """Label of the cover bin (lo, hi] in percent, e.g. ``"10-95"``."""
    return f"{lo:g}-{hi:g}"


def cover_bin(cloud_percent: float, edges: Sequence[float]) -> str:
    """The bin a cloud cover (percent) falls in: ``[e0, e1]``, then ``(e_i, e_i+1]``."""
    for lo, hi in zip(edges[:-1], edges[1:]):
        if cloud_percent <= hi + 1e-9:
            return bin_label(lo, hi)
    return bin_label(edges[-2], edges[-1])


def sort_tiles(tiles: Tiles, *, edges: Sequence[float] = DEFAULT_BIN_EDGES, cover: CoverRange = CoverRange(),
               min_valid_fraction: float = 0.9) -> Tiles:
    """Label every tile with its cover bin and its role; returns the same tiles with a fuller index.

    - ``bin``: the cover bin (edges in percent, default 0/10/95/100 as the original).
    - ``surface_candidate``: fully valid, fully daytime, 0 % cloud: a clear surface. Snow and
      ice are allowed (clouds over snow are the hard case a cloud-masking model must learn);
      ``snow_fraction`` says how much of it there is.
    - ``gan_input``: cloud cover in ``cover`` (percent, ``(min, max]``) and at least
      ``min_valid_fraction`` valid pixels: the masks the generator turns into clouds.

    When the index has the mean angles (:data:`ANGLE_COLUMNS`), a tile takes either role only
    when all four are finite (the clouds are rendered with them).

    Raises
    ------
    SettingError
        Edges not increasing from 0 to 100, or ``min_valid_fraction`` outside [0, 1].
    """
    edges = check_bin_edges(edges)
    check_fraction("min_valid_fraction", min_valid_fraction)
    index = []
    for row in tiles.index:
        # round away float noise (100 * 0.07 == 7.000000000000001) so bin and cover range agree at edges
        pct = round(100.0 * row["cloud_fraction"], 6)
        row = dict(row)
        row["bin"] = cover_bin(pct, edges)
        placed = all(math.isfinite(row[c]) for c in ANGLE_COLUMNS if c in row)
        row["surface_candidate"] = bool(placed and row["cloud_fraction"] == 0 and row["valid_fraction"] == 1
                                        and row["day_fraction"] == 1)
        row["gan_input"] = bool(placed and cover.contains(pct) and row["valid_fraction"] >= min_valid_fraction)
        index.append(row)
    return replace(tiles, index=index)


def bin_counts(index: Sequence[dict], edges: Sequence[float] = DEFAULT_BIN_EDGES) -> dict[str, int]:
    """Number of tiles per cover bin (every bin listed, empty ones as 0)."""
    counts = {bin_label(a, b): 0 for a, b in zip(edges[:-1], edges[1:])}
    for row in index:
        counts[row["bin"]] = counts.get(row["bin"], 0) + 1
    return counts
