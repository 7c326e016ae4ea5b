"""How well a mask -> cloud generator respects its masks, measured on held-out masks.

A good G_B puts bright cloud where the mask says cloud and dark, empty scene where it says
clear. Two figures show this without any reference image:

* mean brightness inside vs outside the mask (:func:`cloudgan_core.composite.brightness`: mean
  of the three channels, 0..255, float);
* IoU (:func:`cloudgan_core.quality.iou`) between the mask and a brightness-threshold cloud
  detector applied to the generated tile (threshold: :func:`cloudgan_core.quality.otsu_threshold`
  over all generated pixels together, unless one is given).

:func:`mask_figures` computes them for any images of the masks (generated ones, or a product's
own images as a reference); :func:`evaluate_generator` runs the generator first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from cloudgan_core.composite import brightness
from cloudgan_core.gan.inference import InferenceError, generate_clouds
from cloudgan_core.quality import iou, otsu_threshold
from cloudgan_core.settings import check_between


@dataclass(frozen=True)
class MaskFigures:
    """How well images follow their masks.

    Attributes
    ----------
    tiles
        Number of tiles.
    cloud_fraction
        Share of mask pixels that are cloud.
    mean_brightness_cloud, mean_brightness_clear
        Mean brightness (0..255) of the pixels inside / outside the masks (``None`` when the masks
        hold no such pixel).
    brightness_contrast
        Cloud minus clear (``None`` when one of them is).
    threshold, threshold_method
        The detector's brightness threshold and ``"otsu"`` or ``"fixed"``.
    iou
        IoU of ``brightness > threshold`` against the masks, pooled over all pixels.
    precision, recall
        Of the detector (``None`` when nothing is detected / the masks hold no cloud).
    """

    tiles: int
    cloud_fraction: float
    mean_brightness_cloud: float | None
    mean_brightness_clear: float | None
    brightness_contrast: float | None
    threshold: float
    threshold_method: str
    iou: float
    precision: float | None
    recall: float | None

    def as_dict(self) -> dict:
        """Plain JSON types (for a model card)."""
        return asdict(self)


def mask_figures(images: np.ndarray, masks: np.ndarray, *, threshold: float | None = None) -> MaskFigures:
    """:class:`MaskFigures` of ``uint8 (N, H, W, 3)`` images of ``(N, H, W)`` masks (non-zero = cloud).

    Parameters
    ----------
    images
        The images (e.g. G_B's output for the masks).
    masks
        The masks (bool, 0/1 or 0/255).
    threshold
        Brightness (0..255) above which a pixel counts as cloud; ``None``: Otsu's threshold over
        all pixels.

    Raises
    ------
    InferenceError
        ``images`` and ``masks`` do not pair up.
    SettingError
        ``threshold`` is outside 0..255.
    """
    b = brightness(images)
    truth = np.asarray(masks).astype(bool)
    if b.shape != truth.shape:
        raise InferenceError(f"images {np.shape(images)} and masks {truth.shape} do not pair up")
    method = "fixed"
    if threshold is None:
        threshold, method = otsu_threshold(b), "otsu"
    threshold = check_between("threshold", threshold, 0.0, 255.0)
    detected = b > np.float32(threshold)
    inside, outside = b[truth], b[~truth]
    mean_in = float(inside.mean(dtype=np.float64)) if inside.size else None
    mean_out = float(outside.mean(dtype=np.float64)) if outside.size else None
    hits = int(np.count_nonzero(detected & truth))
    n_detected, n_truth = int(np.count_nonzero(detected)), int(np.count_nonzero(truth))
    return MaskFigures(
        tiles=int(len(truth)),
        cloud_fraction=n_truth / truth.size,
        mean_brightness_cloud=mean_in,
        mean_brightness_clear=mean_out,
        brightness_contrast=(mean_in - mean_out) if mean_in is not None and mean_out is not None else None,
        threshold=threshold,
        threshold_method=method,
        iou=iou(detected, truth),
        precision=hits / n_detected if n_detected else None,
        recall=hits / n_truth if n_truth else None,
    )


def evaluate_generator(
    model: nn.Module,
    masks: np.ndarray,
    *,
    threshold: float | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 16,
    precision: str = "fp32",
) -> MaskFigures:
    """Generate clouds for held-out masks and measure how well they follow the masks.

    Parameters
    ----------
    model
        Mask -> cloud generator (G_B).
    masks
        ``(N, H, W)`` held-out masks (bool, 0/1 or 0/255; non-zero = cloud), sides multiples of 4.
    threshold
        See :func:`mask_figures`.
    device, batch_size, precision
        As :func:`~cloudgan_core.gan.inference.generate_clouds`.
    """
    if not isinstance(masks, np.ndarray) or masks.ndim != 3 or len(masks) == 0:
        raise InferenceError(f"masks: expected a non-empty (N, H, W) array, got {getattr(masks, 'shape', masks)}")
    result = generate_clouds(model, masks, device=device, batch_size=batch_size, precision=precision)
    return mask_figures(result.clouds, masks, threshold=threshold)
