"""Choosing the torch device and the numeric precision from user settings."""

from __future__ import annotations

import re

import torch

from cloudgan_core.errors import CloudGANError


class DeviceError(CloudGANError):
    """A requested device or precision is not available on this machine."""


_PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """Turn a device setting into a :class:`torch.device`.

    Parameters
    ----------
    name
        ``"auto"`` (the first CUDA GPU when there is one, else the CPU), ``"cpu"``, ``"cuda"``
        or ``"cuda:N"``. A :class:`torch.device` is checked the same way.

    Returns
    -------
    torch.device

    Raises
    ------
    DeviceError
        For an unknown name, or a CUDA device this machine does not have.
    """
    if isinstance(name, torch.device):
        name = str(name)
    text = str(name).strip().lower()
    if text == "auto":
        return torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", text)
    if match is None:
        raise DeviceError(f"device {name!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if not torch.cuda.is_available():
        raise DeviceError(
            f"device {name!r}: CUDA was asked for but this machine has no usable CUDA GPU "
            f"(torch {torch.__version__}, built with CUDA {torch.version.cuda}); use 'cpu' or 'auto'"
        )
    index = int(match.group(1) or 0)
    count = torch.cuda.device_count()
    if index >= count:
        raise DeviceError(f"device {name!r}: only {count} CUDA device(s) here (cuda:0..cuda:{count - 1})")
    return torch.device("cuda", index)


def resolve_precision(precision: str, device: torch.device | str) -> torch.dtype:
    """Turn a precision setting into the compute dtype, checking the device supports it.

    Parameters
    ----------
    precision
        ``"fp32"``, ``"bf16"`` or ``"fp16"``.
    device
        The device that will run the model.

    Returns
    -------
    torch.dtype
        ``torch.float32``, ``torch.bfloat16`` or ``torch.float16``.

    Raises
    ------
    DeviceError
        For an unknown precision, fp16 on the CPU, or bf16 on a GPU without bf16 support.
    """
    key = str(precision).strip().lower()
    if key not in _PRECISIONS:
        raise DeviceError(f"precision {precision!r}: expected one of {', '.join(_PRECISIONS)}")
    device = torch.device(device)
    dtype = _PRECISIONS[key]
    if device.type == "cpu" and dtype == torch.float16:
        raise DeviceError("precision 'fp16' is not supported on the CPU; use 'bf16' or 'fp32' there")
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise DeviceError(
            f"precision 'bf16' is not supported on {torch.cuda.get_device_name(device)}; use 'fp16' or 'fp32'"
        )
    if device.type not in ("cpu", "cuda") and dtype != torch.float32:
        raise DeviceError(f"precision {precision!r} on device {device}: only 'fp32' is supported there")
    return dtype


def default_batch_size(device: torch.device | str, precision: str = "fp32") -> int:
    """Tiles per generator pass when the user sets none.

    16 on a GPU; on the CPU 1 in bf16 (measured faster than 2 on 2 cores) and 2 in fp32 (larger
    CPU batches were slower in ``benchmarks/bench_generator.py``).
    """
    if torch.device(device).type == "cuda":
        return 16
    return 1 if str(precision).strip().lower() == "bf16" else 2
