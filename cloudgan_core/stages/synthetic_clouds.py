"""The ``synthetic_clouds`` stage: the generator (G_B) turns a product's mask tiles into cloud tiles.

Files (``<root>/synthetic_clouds/<key>/``), aligned tile by tile:

- ``clouds.npy``: ``uint8 (N, H, W, 3)`` generated clouds (digital numbers 0..255);
- ``masks.npy``: ``uint8 (N, H, W)`` the mask behind each, 1 = cloud;
- ``index.csv``: the tiles' index rows (as the sorted tiles have them);
- ``clouds.json``: which generator made them (``model``, ``model_sha256``) and the run's figures.

Its inputs are the ``gan_input`` tiles of :mod:`cloudgan_core.stages.sorted_tiles` whose cover lies
in the configured range; one generator pass per tile.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import Field

from cloudgan_core.atomic import atomic_dir, require_inputs, save_npy, write_text
from cloudgan_core.cover import CoverFields, CoverRange
from cloudgan_core.errors import CloudGANError
from cloudgan_core.preview import grid
from cloudgan_core.stages import sorted_tiles
from cloudgan_core.stages.tiles import read_index, write_index
from cloudgan_core.stages.base import Preview
from cloudgan_core.storage import asset_dir

NAME = "synthetic_clouds"
CLOUDS_FILE = "clouds.npy"
MASKS_FILE = "masks.npy"
INDEX_FILE = "index.csv"
INFO_FILE = "clouds.json"
#: Rows (mask | cloud) in the preview.
PREVIEW_ROWS = 6


class SyntheticCloudsConfig(CoverFields):
    """Which mask tiles become clouds: cover in ``(min_cover, max_cover]`` percent."""

    min_cover: float = Field(10.0, description="mask tiles with cloud cover above this (percent) ...")
    max_cover: float = Field(95.0, description="... and at most this (percent) become clouds; "
                                               "0 <= min_cover < max_cover <= 100")


@dataclass(frozen=True)
class SyntheticCloudsData:
    """What :func:`read` returns (arrays memory-mapped).

    Attributes
    ----------
    clouds
        ``uint8 (N, H, W, 3)`` generated clouds.
    masks
        ``uint8 (N, H, W)`` their masks, 1 = cloud.
    index
        One tile index row per cloud (``product``, ``row``, ``col``, ``cloud_fraction``, ...).
    model, model_sha256
        File name and SHA-256 of the generator that made them.
    seed
        Seed of the generator run, when it had one (``None`` for a deterministic generator).
    """

    clouds: np.ndarray
    masks: np.ndarray
    index: list[dict]
    model: str
    model_sha256: str
    seed: int | None = None


@dataclass(frozen=True)
class SyntheticCloudsResult:
    """What :func:`build` made.

    Attributes
    ----------
    path
        The partition's folder.
    tiles
        Clouds generated.
    cover
        The cover range of the mask tiles used.
    model, model_sha256
        The generator.
    device, precision, batch_size
        Where and how it ran.
    seconds, tiles_per_second
        Generator time (``None`` when there was nothing to generate).
    sample
        ``(mask, cloud)`` pairs of the first tiles, for the preview.
    notes
        Remarks for the user (no mask tile in the cover range).
    """

    path: Path
    tiles: int
    cover: CoverRange
    model: str
    model_sha256: str
    device: str
    precision: str
    batch_size: int
    seconds: float | None = None
    tiles_per_second: float | None = None
    sample: tuple[tuple[np.ndarray, np.ndarray], ...] = ()
    notes: tuple[str, ...] = ()

    def figures(self) -> dict[str, object]:
        """The figures shown in the run's metadata (and written to ``clouds.json``)."""
        return {"tiles": self.tiles, "model": self.model, "model_sha256": self.model_sha256,
                "cover_range": self.cover.label, "device": self.device, "precision": self.precision,
                "batch_size": self.batch_size,
                "seconds": None if self.seconds is None else round(self.seconds, 3),
                "tiles_per_second": None if self.tiles_per_second is None else round(self.tiles_per_second, 2)}

    def preview(self) -> Preview | None:
        """Mask | synthetic cloud, one row per tile of :attr:`sample`."""
        if not self.sample:
            return None
        return Preview(grid([list(pair) for pair in self.sample], 112), "mask | synthetic cloud")


def folder(root: Path, key: str) -> Path:
    """``<root>/synthetic_clouds/<key>``."""
    return asset_dir(root, NAME, key)


def write(root: Path, key: str, data: SyntheticCloudsData, figures: dict[str, object] | None = None) -> Path:
    """Write ``data`` as the partition's folder (swapped in whole); ``figures`` (JSON types) join
    ``model``, ``model_sha256`` and ``seed`` in ``clouds.json``."""
    info = {k: v for k, v in (figures or {}).items() if v is not None}
    info.update(model=data.model, model_sha256=data.model_sha256)
    if data.seed is not None:
        info["seed"] = int(data.seed)
    path = folder(root, key)
    with atomic_dir(path) as tmp:
        save_npy(tmp / CLOUDS_FILE, np.asarray(data.clouds, dtype=np.uint8))
        save_npy(tmp / MASKS_FILE, np.asarray(data.masks, dtype=np.uint8))
        write_index(tmp / INDEX_FILE, data.index)
        write_text(tmp / INFO_FILE, json.dumps(info, indent=2, sort_keys=True))
    return path


def read(root: Path, key: str) -> SyntheticCloudsData:
    """The generated clouds of ``key``, checked.

    Raises
    ------
    MissingInputError
        The folder does not exist ("materialize synthetic_clouds for <key> first").
    CloudGANError
        A file is missing, shapes or counts disagree, a mask value is not 0/1, or ``clouds.json``
        does not name the generator (the message names the file).
    """
    path = folder(root, key)
    require_inputs(synthetic_clouds=path)
    for name in (CLOUDS_FILE, MASKS_FILE, INDEX_FILE, INFO_FILE):
        if not (path / name).is_file():
            raise CloudGANError(f"{path / name}: missing; materialize synthetic_clouds for {key} first")
    clouds = np.load(path / CLOUDS_FILE, mmap_mode="r")
    masks = np.load(path / MASKS_FILE, mmap_mode="r")
    index = read_index(path / INDEX_FILE)
    try:
        info = json.loads((path / INFO_FILE).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CloudGANError(f"{path / INFO_FILE}: not JSON ({exc}); materialize synthetic_clouds for {key} "
                            "again") from None
    if clouds.dtype != np.uint8 or clouds.ndim != 4 or clouds.shape[-1] != 3:
        raise CloudGANError(f"{path / CLOUDS_FILE}: expected uint8 (N, H, W, 3), got {clouds.dtype} {clouds.shape}")
    if masks.shape != clouds.shape[:3]:
        raise CloudGANError(f"{path / MASKS_FILE}: shape {masks.shape} does not match the clouds' "
                            f"{clouds.shape[:3]}")
    if len(index) != len(clouds):
        raise CloudGANError(f"{path / INDEX_FILE}: {len(index)} rows for {len(clouds)} cloud tiles")
    if ((masks != 0) & (masks != 1)).any():
        raise CloudGANError(f"{path / MASKS_FILE}: mask values must be 0 or 1")
    if not isinstance(info, dict) or not isinstance(info.get("model_sha256"), str):
        raise CloudGANError(f"{path / INFO_FILE}: no model_sha256 (which generator made these clouds?)")
    seed = info.get("seed")
    return SyntheticCloudsData(clouds, masks, index, model=str(info.get("model", "")),
                               model_sha256=info["model_sha256"], seed=seed if isinstance(seed, int) else None)


def build(root: Path, key: str, config: SyntheticCloudsConfig = SyntheticCloudsConfig(), *, model,
          model_name: str = "", model_sha256: str, device: str = "auto", batch_size: int = 16,
          precision: str = "fp32", num_threads: int | None = None,
          progress: Callable[[int, int], None] | None = None) -> SyntheticCloudsResult:
    """Run the generator over the product's ``gan_input`` mask tiles with cover in the config's range.

    Parameters
    ----------
    root, key
        Storage root and product partition.
    config
        The cover range of the mask tiles used.
    model
        The mask → cloud generator (G_B, a ``torch.nn.Module``).
    model_name, model_sha256
        File name and SHA-256 of its checkpoint (recorded in ``clouds.json``).
    device, batch_size, precision, num_threads, progress
        See :func:`cloudgan_core.gan.generate_clouds`.
    """
    tiles = sorted_tiles.read(root, key).gan_input
    keep = np.flatnonzero(config.cover.contains_fraction([r["cloud_fraction"] for r in tiles.index]))
    masks = np.asarray(tiles.masks[keep], dtype=np.uint8)
    index = [tiles.index[i] for i in keep]
    notes: tuple[str, ...] = ()
    if len(masks):
        from cloudgan_core.gan import generate_clouds

        run = generate_clouds(model, masks, device=device, batch_size=batch_size, precision=precision,
                              num_threads=num_threads, progress=progress)
        clouds = run.clouds
        how = {"device": str(run.device), "precision": run.precision, "batch_size": run.batch_size,
               "seconds": run.seconds, "tiles_per_second": run.tiles_per_second}
    else:
        clouds = np.zeros((0, *(masks.shape[1:] if masks.ndim == 3 else (0, 0)), 3), np.uint8)
        how = {"device": str(device), "precision": precision, "batch_size": batch_size}
        notes = (f"no mask tile of {key} has its cover in {config.cover.label}: no clouds generated",)
    n = min(len(masks), PREVIEW_ROWS)
    result = SyntheticCloudsResult(folder(root, key), len(masks), config.cover, model_name, model_sha256,
                                   sample=tuple((masks[i].copy(), clouds[i].copy()) for i in range(n)),
                                   notes=notes, **how)
    write(root, key, SyntheticCloudsData(clouds, masks, index, model_name, model_sha256), result.figures())
    return result
