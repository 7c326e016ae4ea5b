"""Small stored inputs for the dataset stage tests: sorted tiles and synthetic clouds of a few products.

Real files in the real layout (written with the writers the stages use), small enough that a whole
chain surface pool → composites → training set → quality report runs in well under a second.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from cloudgan_core.stages import composites, surface_tiles, synthetic_clouds
from cloudgan_core.slstr.flags import PIXEL_FLAG_BITS
from cloudgan_core.stages import sorted_tiles
from cloudgan_core.tiles import Tiles

SIZE = 16
MODEL_SHA = hashlib.sha256(b"test generator").hexdigest()
#: The mean angles of every stored test tile (degrees), and the flags of a clear daytime pixel.
ANGLES = {"solar_zenith": 40.0, "solar_azimuth": 140.0, "view_zenith": 20.0, "view_azimuth": 100.0}
CLEAR = PIXEL_FLAG_BITS["day"] | PIXEL_FLAG_BITS["sza_ok"] | PIXEL_FLAG_BITS["valid"] | PIXEL_FLAG_BITS["ocean"]


def _bands(images: np.ndarray) -> np.ndarray:
    """Nine bands of false-colour tiles: reflectances from the RGB, 280 K in S7-S9."""
    return surface_tiles.approximate_bands(images, 280.0)


def write_sorted(root: Path, key: str, land: list[float], *, gan_masks: np.ndarray | None = None,
                 size: int = SIZE, seed: int = 0) -> Path:
    """``sorted_tiles/<key>``: ``surface/`` with len(land) random textured tiles, ``gan_input/`` with
    ``gan_masks`` (and their false colour: bright where cloud), each with bands, flags and
    :data:`ANGLES`, and the full ``index.csv``."""
    rng = np.random.default_rng(seed)
    n = len(land)
    images = rng.integers(20, 120, size=(n, size, size, 3), dtype=np.uint8)
    index = [{"tile": i, "product": key, "row": i * size, "col": 2 * size, "size": size, "cloud_fraction": 0.0,
              "land_fraction": lf, "snow_fraction": 0.0, **ANGLES} for i, lf in enumerate(land)]
    surface = Tiles(images, np.zeros((n, size, size), np.uint8), index, bands=_bands(images),
                    flags=np.full((n, size, size), CLEAR, np.uint16))
    masks = np.zeros((0, size, size), np.uint8) if gan_masks is None else gan_masks.astype(np.uint8)
    gan_images = np.where(masks[..., None] == 1, 220, 40).astype(np.uint8).repeat(3, axis=-1)
    gan_index = [{"tile": n + i, "product": key, "row": (n + i) * size, "col": 0, "size": size,
                  "cloud_fraction": round(float(m.mean()), 6), "land_fraction": 0.0, "snow_fraction": 0.0, **ANGLES}
                 for i, m in enumerate(masks)]
    gan_input = Tiles(gan_images, masks, gan_index, bands=_bands(gan_images),
                      flags=(CLEAR | masks.astype(np.uint16) * np.uint16(PIXEL_FLAG_BITS["cloud"])).astype(np.uint16))
    return sorted_tiles.write(root, key, sorted_tiles.SortedTilesData(index + gan_index, surface, gan_input))


def block_masks(n: int, size: int = SIZE) -> np.ndarray:
    """``n`` masks with a block of growing cover (tile i: rows 0..3+2i, columns 2..13)."""
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        masks[i, : 3 + 2 * i, 2:14] = 1
    return masks


def write_clouds(root: Path, key: str, n: int, *, seed: int, model_sha: str = MODEL_SHA) -> Path:
    """``synthetic_clouds/<key>``: :func:`block_masks` and bright clouds on them."""
    masks = block_masks(n)
    rng = np.random.default_rng(seed)
    level = np.where(masks == 1, 230, 30) + rng.integers(0, 20, size=masks.shape)
    clouds = np.repeat(level[..., None], 3, axis=-1).astype(np.uint8)
    index = [{"tile": i, "product": key, "row": i * SIZE, "col": 0, "cloud_fraction": round(float(m.mean()), 6)}
             for i, m in enumerate(masks)]
    data = synthetic_clouds.SyntheticCloudsData(clouds, masks, index, model="test", model_sha256=model_sha, seed=seed)
    return synthetic_clouds.write(root, key, data)


def pool_of_two(root: Path) -> surface_tiles.SurfaceTilesResult:
    """Products A (3 surfaces) and B (2 surfaces) pooled."""
    write_sorted(root, "A", [0.9, 0.1, 0.6], seed=1)
    write_sorted(root, "B", [0.0, 0.2], seed=2)
    return surface_tiles.build(root, products=["A", "B"])


def composites_of(root: Path, keys_and_counts: dict[str, int], config=None) -> list[str]:
    """Synthetic clouds and composites of each product (``n`` tiles each); returns the keys."""
    for j, (key, n) in enumerate(keys_and_counts.items()):
        write_clouds(root, key, n, seed=j)
        composites.build(root, key, config or composites.CompositesConfig())
    return list(keys_and_counts)
