"""Stand-in for helper A's ``sorted_tiles`` stage module: only :func:`read`, on the existing layout.

``<root>/sorted_tiles/<key>/`` holds ``index.csv`` (every tile of the product) and two groups of
tiles, ``surface/`` (clear surface candidates) and ``gan_input/`` (the masks the generator turns
into clouds), each ``images.npy``, ``masks.npy`` and ``index.csv``. The full module (config,
``build``, ``write``) comes with the scene restructure.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cloudgan_core.atomic import require_inputs
from cloudgan_core.storage import asset_dir
from cloudgan_core.tiles import Tiles, read_index, read_tiles

NAME = "sorted_tiles"


@dataclass(frozen=True)
class SortedTilesData:
    """A product's sorted tiles: ``index`` (all rows), ``surface`` and ``gan_input`` (memory-mapped)."""

    index: list[dict]
    surface: Tiles
    gan_input: Tiles


def folder(root: Path, key: str) -> Path:
    """``<root>/sorted_tiles/<key>``."""
    return asset_dir(root, NAME, key)


def read(root: Path, key: str) -> SortedTilesData:
    """The sorted tiles of ``key`` ("materialize sorted_tiles for <key> first" when missing)."""
    path = folder(root, key)
    require_inputs(sorted_tiles=path)
    return SortedTilesData(read_index(path / "index.csv"), read_tiles(path / "surface", mmap=True),
                           read_tiles(path / "gan_input", mmap=True))
