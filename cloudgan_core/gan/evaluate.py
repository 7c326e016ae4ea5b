"""How well a mask -> cloud generator respects its masks, measured on held-out masks.

A good G_B puts bright cloud where the mask says cloud and dark, empty scene where it says
clear. Two figures show this without any reference image:

* mean brightness inside vs outside the mask (brightness = mean of the three channels, 0..255);
* IoU between the mask and a brightness-threshold cloud detector applied to the generated tile
  (threshold: Otsu's, computed over all generated pixels together, unless one is given).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from cloudgan_core.gan.inference import InferenceError, generate_clouds


def otsu_threshold(values: np.ndarray) -> int:
    """Otsu's threshold of integer values 0..255 (maximises the between-class variance).

    Parameters
    ----------
    values
        uint8 (or integer 0..255) array of any shape.

    Returns
    -------
    int
        ``t`` such that ``values > t`` is the bright class; 127 if all values are equal.
    """
    hist = np.bincount(np.asarray(values, dtype=np.uint8).ravel(), minlength=256).astype(np.float64)
    total = hist.sum()
    if total == 0 or np.count_nonzero(hist) < 2:
        return 127
    levels = np.arange(256, dtype=np.float64)
    weight_low = np.cumsum(hist)  # pixels <= t
    sum_low = np.cumsum(hist * levels)
    weight_high = total - weight_low
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_low = sum_low / weight_low
        mean_high = (sum_low[-1] - sum_low) / weight_high
        between = weight_low * weight_high * (mean_low - mean_high) ** 2
    between = np.nan_to_num(between, nan=-1.0, posinf=-1.0)
    return int(np.argmax(between))


def _as_bool_mask(masks: np.ndarray) -> np.ndarray:
    return masks.astype(bool) if masks.dtype != np.bool_ else masks


def evaluate_generator(
    model: nn.Module,
    masks: np.ndarray,
    *,
    threshold: int | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 16,
    precision: str = "fp32",
) -> dict[str, Any]:
    """Generate clouds for held-out masks and measure how well they follow the masks.

    Parameters
    ----------
    model
        Mask -> cloud generator (G_B).
    masks
        ``(N, H, W)`` held-out masks (bool, 0/1 or 0/255; non-zero = cloud), sides multiples of 4.
    threshold
        Brightness (0..255) above which a generated pixel counts as cloud; ``None``: Otsu's
        threshold over all generated pixels.
    device, batch_size, precision
        As :func:`~cloudgan_core.gan.inference.generate_clouds`.

    Returns
    -------
    dict
        ``tiles``, ``cloud_fraction`` (of mask pixels), ``mean_brightness_cloud`` and
        ``mean_brightness_clear`` (0..255; ``None`` when the masks hold no such pixel),
        ``brightness_contrast`` (cloud minus clear), ``threshold``, ``threshold_method``
        (``"otsu"`` or ``"fixed"``), ``iou`` (pooled over all pixels; ``None`` when both mask
        and detection are empty), ``precision`` and ``recall`` of the detector.
    """
    if not isinstance(masks, np.ndarray) or masks.ndim != 3 or len(masks) == 0:
        raise InferenceError(f"masks: expected a non-empty (N, H, W) array, got {getattr(masks, 'shape', masks)}")
    result = generate_clouds(model, masks, device=device, batch_size=batch_size, precision=precision)
    # brightness per pixel, rounded to 0..255
    brightness = np.rint(result.clouds.astype(np.float32).mean(axis=-1)).astype(np.uint8)
    truth = _as_bool_mask(masks)
    method = "fixed"
    if threshold is None:
        threshold, method = otsu_threshold(brightness), "otsu"
    if not 0 <= threshold <= 255:
        raise InferenceError(f"threshold must be within 0..255, got {threshold}")
    detected = brightness > threshold
    inside = brightness[truth]
    outside = brightness[~truth]
    mean_in = float(inside.mean(dtype=np.float64)) if inside.size else None
    mean_out = float(outside.mean(dtype=np.float64)) if outside.size else None
    intersection = int(np.count_nonzero(detected & truth))
    union = int(np.count_nonzero(detected | truth))
    n_detected = int(np.count_nonzero(detected))
    n_truth = int(np.count_nonzero(truth))
    return {
        "tiles": int(len(masks)),
        "cloud_fraction": n_truth / truth.size,
        "mean_brightness_cloud": mean_in,
        "mean_brightness_clear": mean_out,
        "brightness_contrast": (mean_in - mean_out) if mean_in is not None and mean_out is not None else None,
        "threshold": int(threshold),
        "threshold_method": method,
        "iou": intersection / union if union else None,
        "precision": intersection / n_detected if n_detected else None,
        "recall": intersection / n_truth if n_truth else None,
    }
