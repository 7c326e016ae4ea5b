"""Reading and writing generator checkpoints in the reference CycleGAN format.

The reference implementation saves ``torch.save(net.state_dict())`` of CPU tensors, one file per
network (``latest_net_G_A.pth``, ``latest_net_G_B.pth``, ...). Files written here have that
format, and files written there load here with only a path: width (``ngf``) and depth
(``n_blocks``) are read from the tensor shapes.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from cloudgan_core.atomic import write_bytes
from cloudgan_core.errors import CloudGANError
from cloudgan_core.gan.devices import resolve_device
from cloudgan_core.gan.networks import ResnetGenerator

_EXPECTED = (
    "expected a PyTorch state dict of a CycleGAN ResNet generator (keys 'model.1.weight', "
    "'model.10.conv_block.1.weight', ..., as the reference latest_net_G_B.pth)"
)
_DROPPED_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")
_BLOCK_KEY = re.compile(r"^model\.(\d+)\.conv_block\.")


class CheckpointError(CloudGANError):
    """A checkpoint file cannot be read or does not hold the expected network.

    Parameters
    ----------
    path
        The checkpoint file.
    problem
        What is wrong and what was expected.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(path, f"no such file; {_EXPECTED}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, ... here
        reason = " ".join(str(exc).split()).split(". ")[0][:200]  # torch's first sentence only
        raise CheckpointError(
            path, f"not a readable PyTorch checkpoint (truncated, or another kind of file?): "
            f"{type(exc).__name__}: {reason}; {_EXPECTED}"
        ) from exc
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(path, f"holds a {type(obj).__name__}, not a state dict; {_EXPECTED}")
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(path, f"entry {key!r} is a {type(value).__name__}, not a tensor; {_EXPECTED}")
        if key.startswith("module."):
            key = key[len("module."):]
        if key.endswith(_DROPPED_SUFFIXES):
            continue
        state[key] = value
    return state


def infer_generator_shape(state: Mapping[str, torch.Tensor], path: str | Path = "<state dict>") -> dict[str, int]:
    """Read ``input_nc``, ``output_nc``, ``ngf`` and ``n_blocks`` from a generator state dict.

    Parameters
    ----------
    state
        State dict with the ``module.`` prefix and running-statistics entries already removed.
    path
        Named in the error message.

    Raises
    ------
    CheckpointError
        When the keys or shapes are not those of a ResNet generator.
    """
    first = state.get("model.1.weight")
    if first is None or first.ndim != 4 or tuple(first.shape[2:]) != (7, 7):
        sample = ", ".join(sorted(state)[:4])
        raise CheckpointError(
            path, f"no 7x7 convolution 'model.1.weight' (first keys: {sample}); this is not a "
            f"ResNet generator (a discriminator or another network?); {_EXPECTED}"
        )
    ngf, input_nc = int(first.shape[0]), int(first.shape[1])
    blocks = sorted({int(m.group(1)) for k in state if (m := _BLOCK_KEY.match(k))})
    if blocks != list(range(10, 10 + len(blocks))):
        raise CheckpointError(
            path, f"residual blocks at positions {blocks}, expected consecutive positions from "
            f"model.10; {_EXPECTED}"
        )
    n_blocks = len(blocks)
    last = state.get(f"model.{17 + n_blocks}.weight")
    if last is None or last.ndim != 4:
        raise CheckpointError(
            path, f"no output convolution 'model.{17 + n_blocks}.weight' after {n_blocks} residual "
            f"blocks; {_EXPECTED}"
        )
    return {"input_nc": input_nc, "output_nc": int(last.shape[0]), "ngf": ngf, "n_blocks": n_blocks}


def load_generator(
    path: str | Path,
    device: str | torch.device = "cpu",
    *,
    ngf: int | None = None,
    n_blocks: int | None = None,
) -> ResnetGenerator:
    """Load a ResNet generator checkpoint (reference ``latest_net_G_B.pth`` or our own).

    Parameters
    ----------
    path
        A ``.pth`` file holding the generator's state dict.
    device
        Where to put the model: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
    ngf, n_blocks
        Expected width and depth; inferred from the tensor shapes when ``None``. Given values that
        disagree with the file raise :class:`CheckpointError`.

    Returns
    -------
    ResnetGenerator
        In eval mode, on ``device``, float32.

    Raises
    ------
    CheckpointError
        If the file is missing, unreadable, truncated, not a state dict, or holds another network.

    Notes
    -----
    Loads with ``torch.load(weights_only=True)``: no code in the file is run. A ``module.``
    prefix (from ``DataParallel``) is removed, and running statistics that instance normalisation
    without running stats does not use are dropped; then the weights are loaded strictly.
    """
    path = Path(path)
    state = _read_state_dict(path)
    shape = infer_generator_shape(state, path)
    for name, wanted in (("ngf", ngf), ("n_blocks", n_blocks)):
        if wanted is not None and wanted != shape[name]:
            raise CheckpointError(
                path, f"holds a generator with {name}={shape[name]}, but {name}={wanted} was asked for"
            )
    model = ResnetGenerator(**shape)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        if len(detail) > 600:
            detail = detail[:600] + " ..."
        raise CheckpointError(
            path, f"does not fit a ResNet generator with ngf={shape['ngf']}, n_blocks={shape['n_blocks']}: "
            f"{detail}; {_EXPECTED}"
        ) from exc
    return model.to(resolve_device(device)).eval()


def save_generator(model: nn.Module, path: str | Path) -> Path:
    """Save ``model``'s weights in the reference format, atomically.

    Parameters
    ----------
    model
        The network (a ``DataParallel`` wrapper is unwrapped).
    path
        Target ``.pth`` file; written under a temporary name and renamed into place.

    Returns
    -------
    Path
        ``path``.
    """
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    state = {key: value.detach().to("cpu", copy=True) for key, value in model.state_dict().items()}
    return write_bytes(path, torch_bytes(state))


def torch_bytes(obj: object) -> bytes:
    """``torch.save`` ``obj`` into bytes.

    Saving through a buffer names the archive's root folder ``archive`` whatever the target file
    is called, so the same tensors give the same bytes (and SHA-256) when written atomically
    under a temporary name.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()
