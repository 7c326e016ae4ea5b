"""Stage ``sorted_tiles``: a product's tiles sorted into cloud-cover bins and two groups.

Files under ``<root>/sorted_tiles/<key>/``::

    index.csv     every tile's row (see :mod:`cloudgan_core.stages.tiles`) with its cover ``bin``
                  and roles ``surface_candidate`` and ``gan_input``
    surface/      tile group (images.npy, masks.npy, bands.npy, flags.npy, index.csv) of the clear
                  surface candidates: fully valid, fully daytime, 0 % cloud; snow and ice allowed
                  (clouds over snow are the hard case; ``snow_fraction`` in the index says how much)
    gan_input/    tile group of the masks the generator turns into clouds: cover within
                  ``(min_cover, max_cover]`` percent and at least ``min_valid_fraction`` valid

Either role also needs the tile's four mean angles to be finite. Each group's arrays hold exactly
its index rows, in that order.

Downstream stages read it with :func:`read` (``surface_tiles``, ``synthetic_clouds``, training).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, field_validator

from cloudgan_core.atomic import atomic_dir, require_inputs
from cloudgan_core.cover import CoverFields
from cloudgan_core.preview import grid, shrink
from cloudgan_core.settings import check_fraction
from cloudgan_core.stages import tiles as tiles_stage
from cloudgan_core.stages.base import Preview
from cloudgan_core.storage import asset_dir
from cloudgan_core.tiles import DEFAULT_BIN_EDGES, Tiles, bin_counts, check_bin_edges, sort_tiles

NAME = "sorted_tiles"
#: The two tile groups and the index column that puts a tile in each.
GROUPS = {"surface": "surface_candidate", "gan_input": "gan_input"}
#: Tiles per group in the preview.
PREVIEW_TILES = 3


class SortedTilesConfig(CoverFields):
    """The cover bins, and which tiles become generator inputs (cover range in percent)."""

    bin_edges: list[float] = Field(list(DEFAULT_BIN_EDGES), description="cloud-cover bin edges in percent, "
                                                                        "increasing strictly from 0 to 100")
    min_cover: float = Field(10.0, description="generator inputs: cloud cover above this (percent of the tile) ...")
    max_cover: float = Field(95.0, description="... and at most this (percent); 0 <= min_cover < max_cover <= 100")
    min_valid_fraction: float = Field(0.9, description="generator inputs need at least this share (0..1) of valid "
                                                       "pixels")

    @field_validator("bin_edges")
    @classmethod
    def _bin_edges(cls, value: list[float]) -> list[float]:
        return check_bin_edges(value)

    @field_validator("min_valid_fraction")
    @classmethod
    def _min_valid_fraction(cls, value: float) -> float:
        return check_fraction("min_valid_fraction", value)


@dataclass(frozen=True)
class SortedTilesData:
    """A product's sorted tiles: ``index`` (every tile's row, with bin and roles) and the two tile
    groups ``surface`` and ``gan_input`` (memory-mapped when read; their ``bands``/``flags`` are
    None only in groups written by an older version)."""

    index: list[dict]
    surface: Tiles
    gan_input: Tiles


@dataclass(frozen=True)
class SortedTilesResult:
    """What :func:`build` wrote and the number of tiles per cover bin."""

    path: Path
    data: SortedTilesData
    bins: dict[str, int]
    notes: tuple[str, ...] = ()

    def figures(self) -> dict[str, object]:
        return {"tiles": len(self.data.index), **{f"bin_{label}": n for label, n in self.bins.items()},
                "surface_candidates": len(self.data.surface), "gan_inputs": len(self.data.gan_input),
                "index": self.path / tiles_stage.INDEX}

    def preview(self) -> Preview | None:
        rows = [[shrink(group.images[i], 96), shrink(group.masks[i], 96)]
                for group in (self.data.gan_input, self.data.surface) for i in range(min(PREVIEW_TILES, len(group)))]
        return Preview(grid(rows, 96), "tile | mask: generator inputs, then surface candidates") if rows else None


def folder(root: Path, key: str) -> Path:
    """``<root>/sorted_tiles/<key>``."""
    return asset_dir(root, NAME, key)


def split(labelled: Tiles) -> SortedTilesData:
    """The groups of tiles labelled by :func:`cloudgan_core.tiles.sort_tiles`."""
    groups = {name: labelled.take([i for i, r in enumerate(labelled.index) if r[column]])
              for name, column in GROUPS.items()}
    return SortedTilesData(index=labelled.index, **groups)


def write(root: Path, key: str, data: SortedTilesData) -> Path:
    """Write ``index.csv`` and the two groups (the folder swapped in whole)."""
    out = folder(root, key)
    with atomic_dir(out) as tmp:
        tiles_stage.write_index(tmp / tiles_stage.INDEX, data.index)
        for name in GROUPS:
            tiles_stage.write_group(tmp / name, getattr(data, name))
    return out


def read(root: Path, key: str) -> SortedTilesData:
    """The stored sorted tiles of ``key`` (groups memory-mapped).

    Raises
    ------
    MissingInputError
        ``sorted_tiles`` was not materialized for ``key``.
    """
    path = folder(root, key)
    require_inputs(sorted_tiles=path)
    return SortedTilesData(index=tiles_stage.read_index(path / tiles_stage.INDEX),
                           **{name: tiles_stage.read_group(path / name) for name in GROUPS})


def build(root: Path, key: str, config: SortedTilesConfig = SortedTilesConfig()) -> SortedTilesResult:
    """Sort the tiles of ``key`` into cover bins and write the groups."""
    labelled = sort_tiles(tiles_stage.read(root, key), edges=config.bin_edges, cover=config.cover,
                          min_valid_fraction=config.min_valid_fraction)
    data = split(labelled)
    return SortedTilesResult(write(root, key, data), data, bin_counts(data.index, config.bin_edges))

