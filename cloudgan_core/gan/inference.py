"""Batched mask -> cloud inference with a CycleGAN generator (G_B).

Pre- and post-processing follow the reference implementation: a mask tile is read as a 0/255
grey image, repeated to 3 channels, scaled to [0, 1] and normalised with mean 0.5 and std 0.5,
i.e. mapped to [-1, 1]; the generator's tanh output ``y`` becomes ``(y + 1) / 2 * 255``, here
rounded to the nearest integer (the reference truncates).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cloudgan_core.errors import CloudGANError
from cloudgan_core.gan.devices import resolve_device, resolve_precision


class InferenceError(CloudGANError):
    """The inputs given to the generator are unusable (shape, size, dtype)."""


@dataclass(frozen=True)
class GenerationResult:
    """Outcome of :func:`generate_clouds`.

    Attributes
    ----------
    clouds
        ``uint8`` array ``(N, H, W, 3)``, one RGB (false-colour) cloud tile per input mask.
    seconds
        Wall-clock time of the whole run, preprocessing and copies included (s).
    tiles_per_second
        ``N / seconds``.
    device
        The device that ran the model, e.g. ``"cpu"`` or ``"cuda:0"``.
    precision
        ``"fp32"``, ``"bf16"`` or ``"fp16"``.
    batch_size
        The batch size finally used (smaller than asked for if out-of-memory errors halved it).
    """

    clouds: np.ndarray
    seconds: float
    tiles_per_second: float
    device: str
    precision: str
    batch_size: int


def _mask_scale(masks: np.ndarray | torch.Tensor) -> float:
    """255 for 0/1 (or bool) masks, 1 for 0..255 grey masks: the factor giving 0..255 values."""
    if masks.dtype in (np.bool_, torch.bool):
        return 255.0
    count = masks.size if isinstance(masks, np.ndarray) else masks.numel()
    if count == 0:
        return 1.0
    peak = float(masks.max())
    return 255.0 if peak <= 1 else 1.0


def masks_to_input(masks: np.ndarray | torch.Tensor, *, scale: float | None = None) -> torch.Tensor:
    """Turn mask tiles into generator input, as the reference's mask PNGs were.

    Parameters
    ----------
    masks
        ``(N, H, W)`` bool, or integers 0/1, or 0/255 (any 0..255 grey value is kept as grey).
    scale
        Factor that brings the values to 0..255; inferred when ``None`` (255 for bool or when the
        largest value is at most 1, else 1). Pass it to treat batches of one array alike.

    Returns
    -------
    torch.Tensor
        float32 ``(N, 3, H, W)`` with values in [-1, 1] (0 -> -1, 255 -> 1), on the CPU.
    """
    if masks.ndim != 3:
        raise InferenceError(f"masks: expected an (N, H, W) array, got shape {tuple(masks.shape)}")
    if scale is None:
        scale = _mask_scale(masks)
    if isinstance(masks, np.ndarray):
        tensor = torch.from_numpy(np.ascontiguousarray(masks))
    else:
        tensor = masks.detach().cpu()
    x = tensor.to(torch.float32)
    # value*scale in 0..255 -> /255 -> (v - .5) / .5
    x = x.mul_(scale * 2.0 / 255.0).sub_(1.0)
    return x.unsqueeze(1).expand(-1, 3, -1, -1).contiguous()


def _to_uint8_nhwc(t: torch.Tensor) -> torch.Tensor:
    """tanh output (N, C, H, W) -> uint8 (N, H, W, C) on the same device, rounded to nearest."""
    return t.float().add(1.0).mul_(127.5).round_().clamp_(0.0, 255.0).to(torch.uint8).permute(0, 2, 3, 1)


def output_to_uint8(t: torch.Tensor) -> np.ndarray:
    """Turn generator output into 8-bit images.

    Parameters
    ----------
    t
        ``(N, 3, H, W)`` tensor with values in [-1, 1] (any device and float dtype).

    Returns
    -------
    numpy.ndarray
        ``uint8`` ``(N, H, W, 3)``: ``round((t + 1) / 2 * 255)``, clipped to 0..255.
    """
    if t.ndim != 4:
        raise InferenceError(f"generator output: expected (N, C, H, W), got shape {tuple(t.shape)}")
    return np.ascontiguousarray(_to_uint8_nhwc(t.detach()).cpu().numpy())


def _validate_masks(masks: np.ndarray) -> None:
    if not isinstance(masks, np.ndarray):
        raise InferenceError(f"masks: expected a numpy array, got {type(masks).__name__}")
    if masks.ndim != 3:
        raise InferenceError(f"masks: expected an (N, H, W) array, got shape {masks.shape}")
    _, height, width = masks.shape
    if height % 4 or width % 4 or height == 0 or width == 0:
        raise InferenceError(
            f"masks: tile size {height}x{width} is not a multiple of 4; the generator downsamples "
            f"twice by 2, so crop or pad tiles to sides divisible by 4 (e.g. 256x256)"
        )


@contextlib.contextmanager
def _threads(num_threads: int | None) -> Iterator[None]:
    if num_threads is None:
        yield
        return
    if num_threads < 1:
        raise InferenceError(f"num_threads must be >= 1, got {num_threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def generate_clouds(
    model: nn.Module,
    masks: np.ndarray,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 16,
    precision: str = "fp32",
    num_threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    channels_last: bool | None = None,
) -> GenerationResult:
    """Run the generator over mask tiles, one pass per tile, in batches.

    Parameters
    ----------
    model
        A mask -> cloud generator (G_B), e.g. from :func:`~cloudgan_core.gan.load_generator`.
        It is moved to ``device`` and put in eval mode.
    masks
        ``(N, H, W)`` masks (bool, 0/1 or 0/255); H and W multiples of 4.
    device
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    batch_size
        Tiles per forward pass. A CUDA out-of-memory error halves it and retries the same tiles.
    precision
        ``"fp32"``, ``"bf16"`` (CPU or a bf16-capable GPU) or ``"fp16"`` (GPU only); bf16/fp16
        run under autocast.
    num_threads
        CPU threads for torch during the call (restored afterwards); ``None`` leaves it alone.
    progress
        Called as ``progress(tiles_done, tiles_total)`` after each batch.
    channels_last
        Use the channels-last memory layout; default: on CUDA only.

    Returns
    -------
    GenerationResult
        The uint8 ``(N, H, W, 3)`` clouds and timing figures.

    Notes
    -----
    On the CPU the result is deterministic for a given batch size; other batch sizes round
    differently inside the convolutions (~1e-6), which can move a rare pixel by one level.
    A tile that is all cloud or all clear is a constant image, which instance normalisation
    maps to (amplified) rounding noise: such tiles give no meaningful cloud, which is why the
    pipeline selects tiles by cloud cover.

    Raises
    ------
    InferenceError
        Bad mask array (shape, sides not multiples of 4) or batch size.
    cloudgan_core.gan.devices.DeviceError
        Device or precision not available.
    torch.cuda.OutOfMemoryError
        If even a batch of one does not fit.
    """
    _validate_masks(masks)
    if batch_size < 1:
        raise InferenceError(f"batch_size must be >= 1, got {batch_size}")
    dev = resolve_device(device)
    dtype = resolve_precision(precision, dev)
    on_cuda = dev.type == "cuda"
    if channels_last is None:
        channels_last = on_cuda
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    total, height, width = masks.shape
    clouds = np.empty((total, height, width, 3), dtype=np.uint8)
    scale = _mask_scale(masks)
    model = model.to(dev, memory_format=memory_format).eval()
    autocast = (
        torch.autocast(dev.type, dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()
    )
    # On CUDA: results of batch k are copied to pinned host memory without blocking; they are
    # written into ``clouds`` only after batch k+1 has been queued, so host and GPU overlap.
    pending: tuple[int, int, torch.Tensor, torch.cuda.Event] | None = None

    def finish(item: tuple[int, int, torch.Tensor, torch.cuda.Event]) -> None:
        start, stop, host, event = item
        event.synchronize()
        clouds[start:stop] = host.numpy()

    started = time.perf_counter()
    done = 0
    with _threads(num_threads), torch.inference_mode(), autocast:
        while done < total:
            stop = min(done + batch_size, total)
            x = masks_to_input(masks[done:stop], scale=scale)
            out_of_memory = False
            try:
                if on_cuda:
                    x = x.pin_memory().to(dev, non_blocking=True)
                x = x.contiguous(memory_format=memory_format)
                y = _to_uint8_nhwc(model(x))
                if on_cuda:
                    host = torch.empty(y.shape, dtype=torch.uint8, pin_memory=True)
                    host.copy_(y, non_blocking=True)
                    event = torch.cuda.Event()
                    event.record()
            except torch.cuda.OutOfMemoryError:
                if batch_size == 1:
                    raise
                out_of_memory = True
            if out_of_memory:  # outside the except block, so the traceback's tensors are freed
                x = y = None
                batch_size //= 2
                if on_cuda:
                    torch.cuda.empty_cache()
                continue
            if on_cuda:
                if pending is not None:
                    finish(pending)
                pending = (done, stop, host, event)
            else:
                clouds[done:stop] = y.numpy()
            done = stop
            if progress is not None:
                progress(done, total)
        if pending is not None:
            finish(pending)
    seconds = time.perf_counter() - started
    return GenerationResult(
        clouds=clouds,
        seconds=seconds,
        tiles_per_second=total / seconds if seconds > 0 else float("inf"),
        device=str(dev),
        precision={torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype],
        batch_size=batch_size,
    )
