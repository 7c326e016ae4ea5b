"""The pipeline's stages: one module per Dagster asset, named as the asset.

- :mod:`~cloudgan_core.stages.products`: a verified copy of a product's files
- :mod:`~cloudgan_core.stages.masks`: cloud mask and per-pixel flags (and their plausibility)
- :mod:`~cloudgan_core.stages.false_color`: reflectance and the false-colour image
- :mod:`~cloudgan_core.stages.tiles`: the scene cut into tiles (and the tile file format)
- :mod:`~cloudgan_core.stages.sorted_tiles`: tiles sorted into cover bins, surface and generator inputs
- ``synthetic_clouds``, ``surface_tiles``, ``composites``, ``training_set``, ``quality_report``

Each has ``build(root, key, config, ...)`` returning a typed result (figures and a preview, see
:mod:`~cloudgan_core.stages.base`), and the only ``read``/``write`` that know its files under
``<root>/<asset>/<partition>/``. The Dagster assets call ``build``; so can a notebook or a script.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cloudgan_core.atomic import atomic_dir, require_inputs, save_npy, write_text


@dataclass
class StageResult:
    """What a stage wrote and the figures a user wants to see."""

    path: Path
    figures: dict = field(default_factory=dict)
    preview: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


def generate_product_clouds(sorted_dir: Path, out_dir: Path, model, *, cover_range: tuple[float, float] = (10.0, 95.0),
                            device: str = "auto", batch_size: int = 16, precision: str = "fp32",
                            num_threads: int | None = None, model_name: str = "", model_sha256: str = "",
                            progress=None) -> StageResult:
    """Run the generator over a product's mask tiles in ``cover_range`` (percent, ``(lo, hi]``).

    Writes ``clouds.npy`` (uint8 N x H x W x 3), ``masks.npy`` (uint8 0/1), ``index.csv`` (the
    tiles' index rows, aligned 1:1) and ``clouds.json``; one generator pass per tile.
    """
    require_inputs(sorted_tiles=sorted_dir)
    from cloudgan_core.gan import generate_clouds
    from cloudgan_core.stages.tiles import read_group, write_index

    tiles = read_group(sorted_dir / "gan_input", mmap=False)
    lo, hi = cover_range
    keep = [i for i, r in enumerate(tiles.index) if lo < round(100.0 * r["cloud_fraction"], 6) <= hi]
    tiles = tiles.take(keep)
    figures: dict = {"tiles": len(tiles), "model": model_name, "model_sha256": model_sha256,
                     "cover_range": f"({lo:g}, {hi:g}] %"}
    if len(tiles):
        result = generate_clouds(model, np.asarray(tiles.masks), device=device, batch_size=batch_size,
                                 precision=precision, num_threads=num_threads, progress=progress)
        clouds = result.clouds
        figures.update({"device": str(result.device), "precision": result.precision, "batch_size": result.batch_size,
                        "seconds": round(result.seconds, 3), "tiles_per_second": round(result.tiles_per_second, 2)})
    else:
        size = tiles.masks.shape[1:] if tiles.masks.ndim == 3 else (0, 0)
        clouds = np.zeros((0, *size, 3), np.uint8)
        figures.update({"device": str(device), "precision": precision, "batch_size": batch_size})
    with atomic_dir(out_dir) as tmp:
        save_npy(tmp / "clouds.npy", clouds)
        save_npy(tmp / "masks.npy", np.asarray(tiles.masks, dtype=np.uint8))
        write_index(tmp / "index.csv", tiles.index)
        write_text(tmp / "clouds.json", json.dumps(figures, indent=2, sort_keys=True))
    return StageResult(out_dir, figures)


def split_into_crops(images: np.ndarray, masks: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut (N, H, W[, 3]) tiles into non-overlapping ``size`` crops (more, smaller training samples)."""
    n, h, w = masks.shape
    nr, nc = h // size, w // size
    imgs = images[:, : nr * size, : nc * size].reshape(n, nr, size, nc, size, 3).transpose(0, 1, 3, 2, 4, 5)
    msk = masks[:, : nr * size, : nc * size].reshape(n, nr, size, nc, size).transpose(0, 1, 3, 2, 4)
    return imgs.reshape(-1, size, size, 3), msk.reshape(-1, size, size)


def collect_training_tiles(sorted_dirs: Sequence[Path], *, crop: int | None = None,
                           cover_range: tuple[float, float] = (10.0, 95.0), max_land_fraction: float = 1.0,
                           max_tiles: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict]:
    """Domain A (cloudy false-colour tiles) and domain B (their masks) for CycleGAN training.

    Takes the ``gan_input`` tiles of each sorted-tiles folder with at most ``max_land_fraction``
    land (the original trained on cloudy ocean), optionally cut into ``crop``-pixel crops, keeps
    crops whose cover is in ``cover_range`` (percent), and samples at most ``max_tiles``.
    """
    require_inputs(sorted_tiles=sorted_dirs)
    from cloudgan_core.stages.tiles import read_group

    images, masks, sources = [], [], []
    for folder in sorted_dirs:
        t = read_group(Path(folder) / "gan_input", mmap=False)
        rows = [i for i, r in enumerate(t.index) if r["land_fraction"] <= max_land_fraction]
        if not rows:
            continue
        img, msk = np.asarray(t.images)[rows], np.asarray(t.masks)[rows]
        if crop:
            img, msk = split_into_crops(img, msk, crop)
        cover = msk.reshape(len(msk), -1).mean(axis=1) * 100.0
        ok = (cover > cover_range[0]) & (cover <= cover_range[1])
        images.append(img[ok])
        masks.append(msk[ok])
        sources.append(Path(folder).name)
    if not images or not sum(len(m) for m in masks):
        raise ValueError("no training tiles: materialize sorted_tiles for cloudy products first "
                         "(or widen the cover range / land fraction)")
    a, b = np.concatenate(images), np.concatenate(masks)
    if max_tiles and len(a) > max_tiles:
        pick = np.sort(np.random.default_rng(seed).choice(len(a), max_tiles, replace=False))
        a, b = a[pick], b[pick]
    info = {"products": sources, "tiles": int(len(a)), "tile_size": int(a.shape[1]), "crop": crop,
            "cover_range_percent": list(cover_range), "max_land_fraction": max_land_fraction}
    return a, b, info
