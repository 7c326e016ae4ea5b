"""The ``train_generator`` stage: train the CycleGAN on products' sorted tiles.

Domain A is the cloudy false-colour ``gan_input`` tiles of :mod:`cloudgan_core.stages.sorted_tiles`
(optionally only those over ocean, as the original trained on), domain B their masks
(:func:`collect_training_tiles`). The training itself and the files of the training folder
(``latest_net_{G_A,G_B,D_A,D_B}.pth``, ``model_card.json``/``.md``, ``resume_state.pt``) are
:mod:`cloudgan_core.gan.training`'s; the folder is ``<root>/train_generator`` unless the config
names another. Training resumes after the folder's last finished epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from pydantic import Field, ValidationInfo, field_validator, model_validator

from cloudgan_core.cover import CoverFields, CoverRange
from cloudgan_core.preview import grid
from cloudgan_core.settings import SettingError, check_count, check_fraction
from cloudgan_core.slstr.names import validate_product_id
from cloudgan_core.stages import sorted_tiles
from cloudgan_core.stages.base import Preview
from cloudgan_core.storage import asset_dir
from cloudgan_core.tiles import check_tile_size

NAME = "train_generator"
#: Held-out masks (the last ones) the preview runs the trained G_B on.
PREVIEW_TILES = 4


class TrainGeneratorConfig(CoverFields):
    """What to train on, the network sizes and the schedule (see :class:`cloudgan_core.gan.TrainConfig`)."""

    partitions: list[str] = Field([], description="products partitions to train on; empty = all with sorted tiles")
    min_cover: float = Field(10.0, description="training tiles (or crops) with cloud cover above this (percent) ...")
    max_cover: float = Field(95.0, description="... and at most this (percent)")
    epochs: int = Field(5, description="epochs at the initial learning rate")
    epochs_decay: int = Field(5, description="epochs of linear learning-rate decay")
    ngf: int = Field(64, description="generator width (64 = reference resnet_9blocks)")
    n_blocks: int = Field(9, description="residual blocks")
    ndf: int = Field(64, description="discriminator width")
    batch_size: int = Field(1, description="images per step (the paper uses 1)")
    crop: Optional[int] = Field(None, description="cut tiles into crops of this size (multiple of 4)")
    max_land_fraction: float = Field(0.2, description="domain A: cloudy tiles over (mostly) ocean, as the original")
    max_tiles: Optional[int] = Field(None, description="at most this many training tiles (a seeded sample)")
    max_steps_per_epoch: Optional[int] = Field(None, description="cap on the steps of an epoch")
    seed: int = Field(0, description="seed of the sampling, the initialisation and the training")
    output: Optional[str] = Field(None, description="training folder; default <storage>/train_generator")

    @field_validator("partitions")
    @classmethod
    def _partitions(cls, value: list[str]) -> list[str]:
        return [validate_product_id(k, "train_generator partitions") for k in value]

    @field_validator("epochs", "epochs_decay", "n_blocks")
    @classmethod
    def _non_negative(cls, value: int, info: ValidationInfo) -> int:
        return check_count(info.field_name, value, 0)

    @field_validator("ngf", "ndf", "batch_size")
    @classmethod
    def _positive(cls, value: int, info: ValidationInfo) -> int:
        return check_count(info.field_name, value, 1)

    @field_validator("max_tiles", "max_steps_per_epoch")
    @classmethod
    def _positive_or_none(cls, value: Optional[int], info: ValidationInfo) -> Optional[int]:
        return None if value is None else check_count(info.field_name, value, 1)

    @field_validator("crop")
    @classmethod
    def _crop(cls, value: Optional[int]) -> Optional[int]:
        return None if value is None else check_tile_size(value)

    @field_validator("max_land_fraction")
    @classmethod
    def _land(cls, value: float) -> float:
        return check_fraction("max_land_fraction", value)

    @model_validator(mode="after")
    def _epochs(self):
        if self.epochs + self.epochs_decay < 1:
            raise SettingError(f"epochs + epochs_decay must be >= 1, got {self.epochs} + {self.epochs_decay}")
        return self


@dataclass(frozen=True)
class TrainingTiles:
    """The training data: ``images`` (domain A, ``uint8 (N, h, w, 3)``) and their ``masks`` (domain B,
    ``uint8 (N, h, w)``, 1 = cloud), and how they were chosen."""

    images: np.ndarray
    masks: np.ndarray
    products: tuple[str, ...]
    crop: int | None
    cover: CoverRange
    max_land_fraction: float

    def description(self) -> dict[str, object]:
        """What the model card says about the data (JSON types)."""
        return {"products": list(self.products), "tiles": int(len(self.images)), "tile_size": int(self.images.shape[1]),
                "crop": self.crop, "cover_range_percent": [self.cover.min, self.cover.max],
                "max_land_fraction": self.max_land_fraction}


def _crops(images: np.ndarray, masks: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut (N, H, W[, 3]) tiles into non-overlapping ``size`` crops (more, smaller training samples)."""
    n, h, w = masks.shape
    nr, nc = h // size, w // size
    imgs = images[:, : nr * size, : nc * size].reshape(n, nr, size, nc, size, 3).transpose(0, 1, 3, 2, 4, 5)
    msk = masks[:, : nr * size, : nc * size].reshape(n, nr, size, nc, size).transpose(0, 1, 3, 2, 4)
    return imgs.reshape(-1, size, size, 3), msk.reshape(-1, size, size)


def collect_training_tiles(root: Path, products: Sequence[str], *, crop: int | None = None,
                           cover: CoverRange = CoverRange(10.0, 95.0), max_land_fraction: float = 1.0,
                           max_tiles: int | None = None, seed: int = 0) -> TrainingTiles:
    """Domain A (cloudy false-colour tiles) and domain B (their masks) for CycleGAN training.

    Takes the ``gan_input`` tiles of each product's sorted tiles with at most ``max_land_fraction``
    land, optionally cut into ``crop``-pixel crops, keeps those whose cover is in ``cover``, and
    samples at most ``max_tiles`` (seeded).

    Raises
    ------
    MissingInputError
        A product's sorted tiles are missing.
    TrainingError
        No tile is left.
    """
    from cloudgan_core.gan.training import TrainingError

    images, masks, sources = [], [], []
    for key in products:
        t = sorted_tiles.read(root, key).gan_input
        rows = [i for i, r in enumerate(t.index) if r["land_fraction"] <= max_land_fraction]
        if not rows:
            continue
        img, msk = np.asarray(t.images[rows]), np.asarray(t.masks[rows])
        if crop:
            img, msk = _crops(img, msk, crop)
        ok = cover.contains_fraction(msk.reshape(len(msk), -1).mean(axis=1))
        images.append(img[ok])
        masks.append(msk[ok])
        sources.append(key)
    if not sum(len(m) for m in masks):
        raise TrainingError("no training tiles: materialize sorted_tiles for cloudy products first "
                            "(or widen the cover range / land fraction)")
    a, b = np.concatenate(images), np.concatenate(masks)
    if max_tiles and len(a) > max_tiles:
        pick = np.sort(np.random.default_rng(seed).choice(len(a), max_tiles, replace=False))
        a, b = a[pick], b[pick]
    return TrainingTiles(a, b, tuple(sources), crop, cover, max_land_fraction)


@dataclass(frozen=True)
class TrainGeneratorResult:
    """What :func:`build` did: epochs run (``start_epoch`` .. ``epochs_done``), time, device, the
    number of training tiles, the G_B checkpoint and model card, the last epoch's figures, and G_B's
    output for a few training masks (for the preview)."""

    path: Path
    epochs_done: int
    start_epoch: int
    seconds: float
    device: str
    tiles: int
    generator_b: Path
    model_card: Path
    last_epoch: dict[str, float]
    sample: tuple[tuple[np.ndarray, np.ndarray], ...] = ()
    notes: tuple[str, ...] = ()

    def figures(self) -> dict[str, object]:
        return {"epochs_done": self.epochs_done, "start_epoch": self.start_epoch, "seconds": round(self.seconds, 1),
                "device": self.device, "tiles": self.tiles, "G_B": self.generator_b, "model_card": self.model_card,
                **{f"last_{k}": v for k, v in self.last_epoch.items()}}

    def preview(self) -> Preview | None:
        if not self.sample:
            return None
        return Preview(grid([list(pair) for pair in self.sample], 96), "mask | G_B output")


def folder(root: Path) -> Path:
    """``<root>/train_generator`` (the default training folder)."""
    return asset_dir(root, NAME)


def build(root: Path, config: TrainGeneratorConfig = TrainGeneratorConfig(), *, products: Sequence[str] = (),
          device: str = "auto", num_threads: int | None = None, log: Callable[[str], None] = print,
          command: str | None = None) -> TrainGeneratorResult:
    """Train (or continue training) the CycleGAN on the configured products.

    Parameters
    ----------
    root
        Storage root.
    config
        What to train on and how; ``config.partitions`` (when set) replaces ``products``.
    products
        The partitions to train on when ``config.partitions`` is empty.
    device, num_threads
        Where training runs (see :class:`cloudgan_core.gan.TrainConfig`).
    log
        Receives one progress line per epoch.
    command
        The command that ran this training, for the model card.
    """
    from cloudgan_core.gan import TrainConfig, generate_clouds, load_generator, train_cyclegan

    keys = list(config.partitions) or sorted(set(products))
    data = collect_training_tiles(root, keys, crop=config.crop, cover=config.cover,
                                  max_land_fraction=config.max_land_fraction, max_tiles=config.max_tiles,
                                  seed=config.seed)
    log(f"training on {len(data.images)} tiles of {data.images.shape[1]} px from {len(keys)} products")
    out = Path(config.output) if config.output else folder(root)
    tc = TrainConfig(epochs=config.epochs, epochs_decay=config.epochs_decay, batch_size=config.batch_size,
                     ngf=config.ngf, ndf=config.ndf, n_blocks=config.n_blocks, seed=config.seed, device=device,
                     max_steps_per_epoch=config.max_steps_per_epoch, num_threads=num_threads)
    trained = train_cyclegan(data.images, data.masks, out, tc, log=log, data_description=data.description(),
                             command=command)
    last = trained.history[-1] if trained.history else {}
    held = data.masks[-PREVIEW_TILES:]
    outputs = generate_clouds(load_generator(trained.generator_b), held, batch_size=PREVIEW_TILES).clouds
    return TrainGeneratorResult(
        out, trained.epochs_done, trained.start_epoch, trained.seconds, trained.device, len(data.images),
        trained.generator_b, trained.model_card,
        last_epoch={k: v for k, v in last.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
        sample=tuple((held[i], outputs[i]) for i in range(len(held))))
