"""Training a CycleGAN between cloudy false-colour tiles (domain A) and their masks (domain B).

The recipe is the paper's (Zhu et al. 2017, section 4 and appendix 7.1):

* least-squares GAN losses (MSE against 1 for real, 0 for fake), discriminators' loss halved;
* cycle-consistency L1 loss with weight ``lambda_cycle`` (10) in both directions;
* identity L1 loss with weight ``lambda_identity * lambda_cycle`` (0.5 * 10);
* discriminators see a history of 50 generated images (image pool);
* Adam, lr 2e-4, betas (0.5, 0.999); the lr stays constant for ``epochs`` epochs then decays
  linearly towards zero over ``epochs_decay`` more epochs;
* random horizontal/vertical flips and 90-degree rotations (half-turns only for non-square tiles).

Naming follows the reference: ``G_A`` maps A -> B (cloud image -> mask), ``G_B`` maps B -> A
(mask -> cloud image, the generator the inference asset uses); ``D_A`` judges domain B images,
``D_B`` judges domain A images.

After every epoch the four networks (``latest_net_{G_A,G_B,D_A,D_B}.pth``, reference format),
``model_card.json``/``.md`` and ``resume_state.pt`` (networks, optimisers, schedule, image pools,
random state, loss history) are written atomically. Calling :func:`train_cyclegan` again on the
same folder continues after the last finished epoch.
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cloudgan_core.atomic import write_bytes, write_text
from cloudgan_core.digests import file_digest
from cloudgan_core.errors import CloudGANError
from cloudgan_core.gan.checkpoint import save_generator, torch_bytes
from cloudgan_core.gan.devices import resolve_device
from cloudgan_core.gan.inference import _mask_scale, masks_to_input
from cloudgan_core.gan.networks import NLayerDiscriminator, ResnetGenerator, count_parameters, init_weights

RESUME_FILE = "resume_state.pt"
CARD_JSON = "model_card.json"
CARD_MD = "model_card.md"
NET_FILES = {name: f"latest_net_{name}.pth" for name in ("G_A", "G_B", "D_A", "D_B")}
_STATE_FORMAT = 1
_ARCH_FIELDS = ("ngf", "ndf", "n_blocks", "n_layers_d")
LOSS_NAMES = ("D_A", "G_A", "cycle_A", "idt_A", "D_B", "G_B", "cycle_B", "idt_B")


class TrainingError(CloudGANError):
    """Training inputs, settings or an existing training folder are unusable."""


@dataclass
class TrainConfig:
    """Settings of a CycleGAN training run.

    Attributes
    ----------
    epochs
        Epochs at the initial learning rate.
    epochs_decay
        Further epochs over which the learning rate decays linearly towards 0.
    batch_size
        Images per step (the paper uses 1).
    lr
        Initial Adam learning rate.
    beta1
        Adam's first-moment decay (beta2 is 0.999).
    lambda_cycle
        Weight of the cycle-consistency L1 losses.
    lambda_identity
        Identity loss weight, relative to ``lambda_cycle`` (0 switches it off).
    pool_size
        Generated images kept for the discriminators (0: no pool).
    ngf, ndf
        Base widths of the generators and the discriminators.
    n_blocks
        Residual blocks per generator.
    n_layers_d
        Stride-2 layers of the PatchGAN discriminators (3: 70x70 patches).
    seed
        Seeds weight initialisation, sampling, augmentation and the image pool.
    device
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    max_steps_per_epoch
        Cap on steps per epoch (an epoch is otherwise ``ceil(max(N_A, N_B) / batch_size)`` steps).
    num_threads
        CPU threads for torch during training (restored afterwards); ``None`` leaves it alone.
    """

    epochs: int = 100
    epochs_decay: int = 100
    batch_size: int = 1
    lr: float = 2e-4
    beta1: float = 0.5
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5
    pool_size: int = 50
    ngf: int = 64
    ndf: int = 64
    n_blocks: int = 9
    n_layers_d: int = 3
    seed: int = 0
    device: str = "auto"
    max_steps_per_epoch: int | None = None
    num_threads: int | None = None

    @property
    def total_epochs(self) -> int:
        """``epochs + epochs_decay``."""
        return self.epochs + self.epochs_decay

    def validate(self) -> None:
        """Raise :class:`TrainingError` for settings out of range."""
        checks = [
            (self.epochs >= 0 and self.epochs_decay >= 0 and self.total_epochs >= 1,
             "epochs + epochs_decay must be >= 1 (both >= 0)"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (0 <= self.beta1 < 1, "beta1 must be in [0, 1)"),
            (self.lambda_cycle >= 0 and self.lambda_identity >= 0, "loss weights must be >= 0"),
            (self.pool_size >= 0, "pool_size must be >= 0"),
            (self.ngf >= 1 and self.ndf >= 1 and self.n_blocks >= 0 and self.n_layers_d >= 1,
             "ngf, ndf, n_layers_d must be >= 1 and n_blocks >= 0"),
            (self.max_steps_per_epoch is None or self.max_steps_per_epoch >= 1,
             "max_steps_per_epoch must be >= 1 or None"),
        ]
        for ok, message in checks:
            if not ok:
                raise TrainingError(f"TrainConfig: {message} ({self})")


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`train_cyclegan`.

    Attributes
    ----------
    out_dir
        The training folder.
    epochs_done
        Epochs finished in total (earlier calls included).
    start_epoch
        First epoch (1-based) trained by this call; ``epochs_done + 1`` if there was nothing left.
    history
        One dict per finished epoch: ``epoch``, ``lr``, ``steps``, ``seconds`` and the mean losses.
    seconds
        Wall-clock time of this call (s).
    device
        The device used.
    generator_a, generator_b
        Paths of ``latest_net_G_A.pth`` (cloud -> mask) and ``latest_net_G_B.pth`` (mask -> cloud).
    model_card
        Path of ``model_card.json``.
    """

    out_dir: Path
    epochs_done: int
    start_epoch: int
    history: list[dict[str, Any]]
    seconds: float
    device: str
    generator_a: Path
    generator_b: Path
    model_card: Path


def lr_factor(epoch_index: int, epochs: int, epochs_decay: int) -> float:
    """Learning-rate multiplier for the 0-based ``epoch_index`` (the reference's 'linear' policy).

    1 for the first ``epochs`` epochs, then ``1 - k / (epochs_decay + 1)`` for the k-th decay
    epoch (k = 1 .. epochs_decay), so the last epoch still learns at ``1 / (epochs_decay + 1)``.
    """
    return 1.0 - max(0, epoch_index + 1 - epochs) / float(epochs_decay + 1)


class ImagePool:
    """History of generated images shown to a discriminator (Shrivastava et al. 2017).

    Until the pool is full every image is stored and returned; then each query image is, with
    probability 1/2, swapped for a random stored one (which it replaces), else returned as is.

    Parameters
    ----------
    size
        Number of images kept; 0 disables the pool.
    rng
        Random generator deciding the swaps.
    """

    def __init__(self, size: int, rng: np.random.Generator) -> None:
        self.size = size
        self.rng = rng
        self.images: list[torch.Tensor] = []

    def query(self, batch: torch.Tensor) -> torch.Tensor:
        """Return a batch of the same shape, mixing ``batch`` with pooled images (detached)."""
        if self.size == 0:
            return batch.detach()
        out = []
        for image in batch.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif self.rng.random() > 0.5:
                slot = int(self.rng.integers(0, self.size))
                out.append(self.images[slot].clone())
                self.images[slot] = image.clone()
            else:
                out.append(image)
        return torch.cat(out, 0)


@dataclass
class _Nets:
    G_A: ResnetGenerator
    G_B: ResnetGenerator
    D_A: NLayerDiscriminator
    D_B: NLayerDiscriminator
    opt_G: torch.optim.Adam = field(init=False)
    opt_D: torch.optim.Adam = field(init=False)

    def all(self) -> dict[str, nn.Module]:
        return {"G_A": self.G_A, "G_B": self.G_B, "D_A": self.D_A, "D_B": self.D_B}


def _build(config: TrainConfig, device: torch.device) -> _Nets:
    gen = torch.Generator().manual_seed(config.seed)
    nets = _Nets(
        G_A=ResnetGenerator(3, 3, config.ngf, config.n_blocks),
        G_B=ResnetGenerator(3, 3, config.ngf, config.n_blocks),
        D_A=NLayerDiscriminator(3, config.ndf, config.n_layers_d),
        D_B=NLayerDiscriminator(3, config.ndf, config.n_layers_d),
    )
    for net in nets.all().values():
        init_weights(net, 0.02, generator=gen)
        net.to(device).train()
    betas = (config.beta1, 0.999)
    nets.opt_G = torch.optim.Adam([*nets.G_A.parameters(), *nets.G_B.parameters()], lr=config.lr, betas=betas)
    nets.opt_D = torch.optim.Adam([*nets.D_A.parameters(), *nets.D_B.parameters()], lr=config.lr, betas=betas)
    return nets


def _check_data(images_a: np.ndarray, masks_b: np.ndarray) -> None:
    if not isinstance(images_a, np.ndarray) or images_a.ndim != 4 or images_a.shape[-1] != 3:
        raise TrainingError(
            f"images_a: expected a (N, H, W, 3) uint8 array of false-colour tiles, got "
            f"{getattr(images_a, 'shape', type(images_a).__name__)}"
        )
    if images_a.dtype != np.uint8:
        raise TrainingError(f"images_a: expected uint8 values 0..255, got dtype {images_a.dtype}")
    if not isinstance(masks_b, np.ndarray) or masks_b.ndim != 3:
        raise TrainingError(
            f"masks_b: expected an (M, H, W) mask array, got {getattr(masks_b, 'shape', type(masks_b).__name__)}"
        )
    if len(images_a) == 0 or len(masks_b) == 0:
        raise TrainingError(
            f"need at least one tile in each domain, got {len(images_a)} images and {len(masks_b)} masks"
        )
    if images_a.shape[1:3] != masks_b.shape[1:3]:
        raise TrainingError(f"tile sizes differ: images {images_a.shape[1:3]} vs masks {masks_b.shape[1:3]}")
    height, width = masks_b.shape[1:3]
    if height % 4 or width % 4:
        raise TrainingError(f"tile size {height}x{width} is not a multiple of 4 (the generator needs it)")


def _augment(batch: np.ndarray, rng: np.random.Generator, square: bool) -> np.ndarray:
    """Random flips and rotations of each ``(H, W, ...)`` item of ``batch`` (a new array)."""
    out = []
    for item in batch:
        if rng.random() < 0.5:
            item = item[:, ::-1]
        if rng.random() < 0.5:
            item = item[::-1]
        turns = int(rng.integers(0, 4)) if square else 2 * int(rng.integers(0, 2))
        out.append(np.rot90(item, turns))
    return np.ascontiguousarray(np.stack(out))


def _images_to_input(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` -> float ``(N, 3, H, W)`` in [-1, 1], as the reference's loader."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).to(torch.float32)
    return x.mul_(2.0 / 255.0).sub_(1.0).contiguous()


def _set_requires_grad(nets: list[nn.Module], flag: bool) -> None:
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(flag)


def _lsgan(prediction: torch.Tensor, real: bool) -> torch.Tensor:
    target = torch.ones_like(prediction) if real else torch.zeros_like(prediction)
    return nn.functional.mse_loss(prediction, target)


def _train_step(
    nets: _Nets,
    real_a: torch.Tensor,
    real_b: torch.Tensor,
    pool_a: ImagePool,
    pool_b: ImagePool,
    config: TrainConfig,
) -> dict[str, float]:
    """One generator update and one discriminator update; returns the losses."""
    l1 = nn.functional.l1_loss
    lam = config.lambda_cycle
    fake_b = nets.G_A(real_a)
    rec_a = nets.G_B(fake_b)
    fake_a = nets.G_B(real_b)
    rec_b = nets.G_A(fake_a)

    _set_requires_grad([nets.D_A, nets.D_B], False)
    nets.opt_G.zero_grad(set_to_none=True)
    if config.lambda_identity > 0:
        idt_a = l1(nets.G_A(real_b), real_b) * lam * config.lambda_identity
        idt_b = l1(nets.G_B(real_a), real_a) * lam * config.lambda_identity
    else:
        idt_a = idt_b = torch.zeros((), device=real_a.device)
    g_a = _lsgan(nets.D_A(fake_b), True)
    g_b = _lsgan(nets.D_B(fake_a), True)
    cycle_a = l1(rec_a, real_a) * lam
    cycle_b = l1(rec_b, real_b) * lam
    (g_a + g_b + cycle_a + cycle_b + idt_a + idt_b).backward()
    nets.opt_G.step()

    _set_requires_grad([nets.D_A, nets.D_B], True)
    nets.opt_D.zero_grad(set_to_none=True)
    # pool_b holds generated B images (fake masks) for D_A; pool_a generated A images for D_B.
    d_a = 0.5 * (_lsgan(nets.D_A(real_b), True) + _lsgan(nets.D_A(pool_b.query(fake_b)), False))
    d_b = 0.5 * (_lsgan(nets.D_B(real_a), True) + _lsgan(nets.D_B(pool_a.query(fake_a)), False))
    d_a.backward()
    d_b.backward()
    nets.opt_D.step()
    values = (d_a, g_a, cycle_a, idt_a, d_b, g_b, cycle_b, idt_b)
    return {name: float(v.detach()) for name, v in zip(LOSS_NAMES, values)}


def _save_state(
    path: Path, nets: _Nets, pools: tuple[ImagePool, ImagePool], rng: np.random.Generator,
    epochs_done: int, history: list[dict[str, Any]], config: TrainConfig,
) -> None:
    state = {
        "format": _STATE_FORMAT,
        "epochs_done": epochs_done,
        "architecture": {name: getattr(config, name) for name in _ARCH_FIELDS},
        "config": dataclasses.asdict(config),
        "nets": {name: {k: v.detach().cpu() for k, v in net.state_dict().items()} for name, net in nets.all().items()},
        "optimizers": {"G": nets.opt_G.state_dict(), "D": nets.opt_D.state_dict()},
        "schedule": {"policy": "linear", "epochs_done": epochs_done},
        "pools": {"A": [t.cpu() for t in pools[0].images], "B": [t.cpu() for t in pools[1].images]},
        "rng": rng.bit_generator.state,
        "history": history,
    }
    write_bytes(path, torch_bytes(state))


def _load_state(path: Path, nets: _Nets, pools: tuple[ImagePool, ImagePool], rng: np.random.Generator,
                config: TrainConfig, device: torch.device) -> tuple[int, list[dict[str, Any]]]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TrainingError(
            f"{path}: resume state unreadable ({type(exc).__name__}); delete it to start afresh"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
        raise TrainingError(f"{path}: not a resume state of format {_STATE_FORMAT}; delete it to start afresh")
    wanted = {name: getattr(config, name) for name in _ARCH_FIELDS}
    if state["architecture"] != wanted:
        raise TrainingError(
            f"{path}: the training in this folder uses {state['architecture']}, but the config asks "
            f"for {wanted}; use another out_dir or the same architecture"
        )
    for name, net in nets.all().items():
        net.load_state_dict(state["nets"][name], strict=True)
    nets.opt_G.load_state_dict(state["optimizers"]["G"])
    nets.opt_D.load_state_dict(state["optimizers"]["D"])
    pools[0].images = [t.to(device) for t in state["pools"]["A"]]
    pools[1].images = [t.to(device) for t in state["pools"]["B"]]
    rng.bit_generator.state = state["rng"]
    return int(state["epochs_done"]), list(state["history"])


def _reference_line(arch: Mapping[str, Any]) -> str:
    blocks = arch.get("n_blocks")
    if blocks in (6, 9):
        return (f"- Reference format: loads in pytorch-CycleGAN-and-pix2pix with `--netG resnet_{blocks}blocks "
                f"--ngf {arch.get('ngf')} --ndf {arch.get('ndf')} --norm instance --no_dropout`")
    return (f"- Reference format (state dict keys as pytorch-CycleGAN-and-pix2pix); its command line offers "
            f"only 6 or 9 residual blocks, this model has {blocks}")


def render_model_card(card: Mapping[str, Any]) -> str:
    """Markdown view of a model card dict (as written to ``model_card.json``)."""
    lines = [f"# {card.get('title', 'CloudGAN CycleGAN generator')}", ""]
    if card.get("summary"):
        lines += [str(card["summary"]), ""]
    arch = card.get("architecture", {})
    lines += [
        "## Model",
        "",
        f"- G_B (mask -> cloud, used for inference): `{card.get('files', {}).get('G_B', {}).get('path', '')}`"
        f" sha256 `{card.get('files', {}).get('G_B', {}).get('sha256', '')}`",
        f"- G_A (cloud -> mask): `{card.get('files', {}).get('G_A', {}).get('path', '')}`",
        f"- ResNet generator, ngf={arch.get('ngf')}, n_blocks={arch.get('n_blocks')}, "
        f"{arch.get('generator_parameters')} parameters; PatchGAN discriminators ndf={arch.get('ndf')}",
        _reference_line(arch),
        "",
        "## Data",
        "",
    ]
    data = card.get("data")
    if isinstance(data, Mapping):
        lines += [f"- {k}: {v}" for k, v in data.items()]
    elif data:
        lines.append(str(data))
    else:
        lines.append("(not described)")
    lines += ["", "## Training", ""]
    if card.get("command"):
        lines += ["Command:", "", "```", str(card["command"]), "```", ""]
    lines += [
        f"- epochs done: {card.get('epochs_done')} of {card.get('epochs_planned')}",
        f"- time: {card.get('seconds_total', 0):.1f} s on {card.get('device')} (torch {card.get('torch')})",
        f"- config: `{json.dumps(card.get('config', {}), sort_keys=True)}`",
        "",
        "| epoch | lr | steps | s | " + " | ".join(LOSS_NAMES) + " |",
        "|" + "---|" * (4 + len(LOSS_NAMES)),
    ]
    for row in card.get("history", []):
        cells = [str(row["epoch"]), f"{row['lr']:.2e}", str(row["steps"]), f"{row['seconds']:.1f}"]
        cells += [f"{row['losses'][name]:.4f}" for name in LOSS_NAMES]
        lines.append("| " + " | ".join(cells) + " |")
    evaluation = card.get("evaluation")
    if evaluation:
        lines += ["", "## Evaluation on held-out masks", ""]
        lines += [f"- {k}: {v}" for k, v in evaluation.items()]
    if card.get("notes"):
        lines += ["", "## Notes", "", str(card["notes"])]
    return "\n".join(lines) + "\n"


def write_model_card(out_dir: str | Path, card: Mapping[str, Any]) -> tuple[Path, Path]:
    """Atomically write ``model_card.json`` and ``model_card.md`` for ``card`` into ``out_dir``."""
    out_dir = Path(out_dir)
    json_path = write_text(out_dir / CARD_JSON, json.dumps(card, indent=2, sort_keys=True) + "\n")
    md_path = write_text(out_dir / CARD_MD, render_model_card(card))
    return json_path, md_path


def _card(
    out_dir: Path, config: TrainConfig, nets: _Nets, history: list[dict[str, Any]], device: torch.device,
    data: Any, command: str | None, extra: Mapping[str, Any] | None,
) -> dict[str, Any]:
    files = {
        name: {"path": NET_FILES[name], "sha256": file_digest(out_dir / NET_FILES[name])}
        for name in ("G_A", "G_B", "D_A", "D_B")
    }
    card: dict[str, Any] = {
        "title": "CloudGAN CycleGAN generator",
        "summary": "G_B turns a cloud mask tile (0/255, repeated to 3 channels, scaled to [-1, 1]) "
        "into a synthetic cloudy false-colour tile; G_A is the inverse direction.",
        "files": files,
        "architecture": {
            "generator": "resnet", "input_nc": 3, "output_nc": 3, "norm": "instance", "dropout": False,
            "ngf": config.ngf, "n_blocks": config.n_blocks, "ndf": config.ndf, "n_layers_d": config.n_layers_d,
            "generator_parameters": count_parameters(nets.G_B),
        },
        "data": data,
        "command": command,
        "epochs_done": len(history),
        "epochs_planned": config.total_epochs,
        "history": history,
        "seconds_total": float(sum(row["seconds"] for row in history)),
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "config": dataclasses.asdict(config),
    }
    if extra:
        card.update(extra)
    return card


def train_cyclegan(
    images_a: np.ndarray,
    masks_b: np.ndarray,
    out_dir: str | Path,
    config: TrainConfig,
    *,
    log: Callable[[str], None] = print,
    data_description: Any = None,
    command: str | None = None,
    card_extra: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Train (or continue training) a CycleGAN between cloud tiles and mask tiles.

    Parameters
    ----------
    images_a
        Domain A: uint8 ``(N, H, W, 3)`` cloudy false-colour tiles (may be a memory map).
    masks_b
        Domain B: ``(M, H, W)`` masks (bool, 0/1 or 0/255), same H and W (multiples of 4).
        The domains are unpaired: each step draws A tiles in shuffled order and B tiles at random.
    out_dir
        Training folder; if it holds a ``resume_state.pt``, training continues after its last
        finished epoch (the architecture must match).
    config
        Hyper-parameters, seed and device.
    log
        Receives one progress line per epoch.
    data_description
        JSON-serialisable description of the training data, stored in the model card.
    command
        The command that ran this training, stored in the model card.
    card_extra
        Further JSON-serialisable fields merged into the model card (e.g. an ``evaluation``).

    Returns
    -------
    TrainResult

    Raises
    ------
    TrainingError
        Bad inputs or settings, or a resume state that does not match ``config``.
    """
    config.validate()
    _check_data(images_a, masks_b)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    nets = _build(config, device)
    rng = np.random.default_rng(config.seed)
    pools = (ImagePool(config.pool_size, rng), ImagePool(config.pool_size, rng))
    history: list[dict[str, Any]] = []
    epochs_done = 0
    resume_path = out_dir / RESUME_FILE
    if resume_path.exists():
        epochs_done, history = _load_state(resume_path, nets, pools, rng, config, device)
        log(f"resuming {out_dir} after epoch {epochs_done}")
    start_epoch = epochs_done + 1

    mask_scale = _mask_scale(masks_b)
    n_a, n_b = len(images_a), len(masks_b)
    square = images_a.shape[1] == images_a.shape[2]
    epoch_len = max(n_a, n_b)
    steps = math.ceil(epoch_len / config.batch_size)
    if config.max_steps_per_epoch is not None:
        steps = min(steps, config.max_steps_per_epoch)

    threads_before = torch.get_num_threads()
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    started = time.perf_counter()
    try:
        for epoch_index in range(epochs_done, config.total_epochs):
            epoch_started = time.perf_counter()
            lr = config.lr * lr_factor(epoch_index, config.epochs, config.epochs_decay)
            for opt in (nets.opt_G, nets.opt_D):
                for group in opt.param_groups:
                    group["lr"] = lr
            order_a = rng.permutation(epoch_len) % n_a
            sums = dict.fromkeys(LOSS_NAMES, 0.0)
            for step in range(steps):
                batch = slice(step * config.batch_size, (step + 1) * config.batch_size)
                idx_a = order_a[batch]
                idx_b = rng.integers(0, n_b, len(idx_a))
                tiles_a = _augment(np.stack([images_a[i] for i in idx_a]), rng, square)
                tiles_b = _augment(np.stack([masks_b[i] for i in idx_b]), rng, square)
                real_a = _images_to_input(tiles_a).to(device)
                real_b = masks_to_input(tiles_b, scale=mask_scale).to(device)
                losses = _train_step(nets, real_a, real_b, pools[0], pools[1], config)
                for name, value in losses.items():
                    sums[name] += value
            epochs_done = epoch_index + 1
            row = {
                "epoch": epochs_done,
                "lr": lr,
                "steps": steps,
                "seconds": time.perf_counter() - epoch_started,
                "losses": {name: total / steps for name, total in sums.items()},
            }
            history.append(row)
            for name in ("G_A", "G_B", "D_A", "D_B"):
                save_generator(nets.all()[name], out_dir / NET_FILES[name])
            card = _card(out_dir, config, nets, history, device, data_description, command, card_extra)
            write_model_card(out_dir, card)
            _save_state(resume_path, nets, pools, rng, epochs_done, history, config)
            summary = " ".join(f"{k}={v:.3f}" for k, v in row["losses"].items())
            log(f"epoch {epochs_done}/{config.total_epochs} lr={lr:.2e} steps={steps} "
                f"{row['seconds']:.1f}s {summary}")
    finally:
        torch.set_num_threads(threads_before)
    if start_epoch > config.total_epochs:
        log(f"{out_dir}: already trained for {epochs_done} epochs (config asks for {config.total_epochs})")
    return TrainResult(
        out_dir=out_dir,
        epochs_done=epochs_done,
        start_epoch=start_epoch,
        history=history,
        seconds=time.perf_counter() - started,
        device=str(device),
        generator_a=out_dir / NET_FILES["G_A"],
        generator_b=out_dir / NET_FILES["G_B"],
        model_card=out_dir / CARD_JSON,
    )
