"""Figures a user compares models and composite settings by.

* **Detector IoU**: a simple brightness-threshold cloud detector (pixel is cloud where its mean
  RGB exceeds a threshold; by default the Otsu threshold over the whole set) is run on the
  composites, and its output compared with the true masks as intersection over union, pooled
  over all pixels of the set. A composite whose clouds are where the mask says (and nowhere else)
  scores high.
* **Brightness change**: mean of ``brightness(composite) − brightness(surface)`` inside the mask
  and outside it (digital numbers). An exact-mask composite has 0 outside.

:func:`quality_report` gives both figures for the alpha composite and for the original 50 % blend
on the same inputs, plus the cover histogram; :func:`report_plot_png` draws them as a PNG.

The set-wide threshold cannot tell a bright surface from cloud, and the original blend's per-image
stretch takes tile-to-tile brightness out; so the report also gives the IoU with an Otsu threshold
per tile, which compares the two blends on equal terms.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from cloudgan_core.composite import _as_images, _as_masks, composite, mean_rgb
from cloudgan_core.errors import CloudGANError
from cloudgan_core.export import cover_histogram


def brightness(images: np.ndarray) -> np.ndarray:
    """Per-pixel brightness: mean of R, G and B in digital numbers.

    Parameters
    ----------
    images
        ``(N, H, W, 3)`` tiles (uint8, 0..255).

    Returns
    -------
    numpy.ndarray
        ``float32 (N, H, W)``, 0..255.
    """
    return mean_rgb(_as_images(images, "images"))


def _otsu_of(b: np.ndarray) -> float:
    """Otsu threshold of brightness values ``b`` (any shape); a constant input returns its value."""
    from skimage.filters import threshold_otsu

    if b.size == 0:
        raise CloudGANError("images: empty set, no threshold to compute")
    lo, hi = float(b.min()), float(b.max())
    if lo == hi:
        return lo
    return float(threshold_otsu(b.ravel(), nbins=256))


def otsu_threshold(images: np.ndarray) -> float:
    """Otsu threshold of the brightness of all pixels of the set (digital numbers).

    The brightness histogram (256 bins over the value range) is split where the between-class
    variance is largest. A set of one constant brightness returns that value.
    """
    return _otsu_of(brightness(images))


def _detect(b: np.ndarray, threshold: float | None, per_tile: bool) -> np.ndarray:
    """Threshold detector on precomputed brightness ``b`` (N, H, W)."""
    if threshold is not None:
        return b > np.float32(threshold)
    if not per_tile:
        return b > np.float32(_otsu_of(b))
    out = np.empty(b.shape, dtype=bool)
    for i in range(b.shape[0]):
        out[i] = b[i] > np.float32(_otsu_of(b[i]))
    return out


def threshold_detector(
    images: np.ndarray, threshold: float | None = None, *, per_tile: bool = False
) -> np.ndarray:
    """A simple cloud detector: a pixel is cloud where its brightness exceeds a threshold.

    Parameters
    ----------
    images
        ``uint8 (N, H, W, 3)`` composites.
    threshold
        Brightness threshold in digital numbers (0..255). ``None`` (default): the Otsu threshold
        over the whole set (:func:`otsu_threshold`), one threshold for all tiles.
    per_tile
        With ``threshold=None``, compute the Otsu threshold of each tile separately instead.
        This takes tile-to-tile surface brightness out of the picture, but it always splits a
        tile in two, so it over-detects on clear tiles (and on fully cloudy ones).

    Returns
    -------
    numpy.ndarray
        ``bool (N, H, W)``, True = detected cloud.
    """
    return _detect(brightness(images), threshold, per_tile)


def iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two boolean masks, pooled over all pixels (1.0 if both empty)."""
    p = np.asarray(predicted, dtype=bool)
    t = np.asarray(truth, dtype=bool)
    if p.shape != t.shape:
        raise CloudGANError(f"detected mask {p.shape} and true mask {t.shape} differ in shape")
    union = int(np.count_nonzero(p | t))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(p & t)) / union


def detector_iou(
    images: np.ndarray,
    masks: np.ndarray,
    threshold: float | None = None,
    *,
    per_tile: bool = False,
) -> float:
    """IoU between the true masks and :func:`threshold_detector` run on ``images``.

    Parameters
    ----------
    images
        ``uint8 (N, H, W, 3)`` composites.
    masks
        ``(N, H, W)`` true masks, 1 = cloud.
    threshold, per_tile
        See :func:`threshold_detector` (default: Otsu over the set).

    Returns
    -------
    float
        IoU in 0..1, pooled over all pixels of the set.
    """
    return iou(threshold_detector(images, threshold, per_tile=per_tile), _as_masks(masks))


def brightness_change(
    composites: np.ndarray, surfaces: np.ndarray, masks: np.ndarray
) -> dict[str, float]:
    """Mean brightness change from surface to composite, inside and outside the mask.

    Returns
    -------
    dict
        ``inside`` / ``outside``: mean signed change (digital numbers) over masked / clear
        pixels of the set; ``inside_abs`` / ``outside_abs``: mean absolute change. A region with
        no pixels gives 0.0.
    """
    comp = _as_images(composites, "composites")
    surf = _as_images(surfaces, "surfaces")
    mask = _as_masks(masks)
    if comp.shape != surf.shape or comp.shape[:3] != mask.shape:
        raise CloudGANError(
            f"composites {comp.shape}, surfaces {surf.shape} and masks {mask.shape} do not pair up"
        )
    return _change(brightness(comp) - brightness(surf), mask)


def _change(delta: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Mean signed and absolute ``delta`` inside and outside ``mask``."""

    def mean(values: np.ndarray) -> float:
        return float(values.mean(dtype=np.float64)) if values.size else 0.0

    inside, outside = delta[mask], delta[~mask]
    return {
        "inside": mean(inside),
        "outside": mean(outside),
        "inside_abs": mean(np.abs(inside)),
        "outside_abs": mean(np.abs(outside)),
    }


def _figures(images: np.ndarray, surface_b: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Report figures of one composite set (brightness of the surfaces given, computed once)."""
    if images.shape[:3] != mask.shape or surface_b.shape != mask.shape:
        raise CloudGANError(
            f"composites {images.shape}, surfaces {surface_b.shape} and masks {mask.shape} "
            "do not pair up"
        )
    b = brightness(images)
    threshold = _otsu_of(b)
    change = _change(b - surface_b, mask)
    return {
        "detector_iou": iou(_detect(b, threshold, False), mask),
        "threshold": threshold,
        "detector_iou_per_tile": iou(_detect(b, None, True), mask),
        "brightness_inside": change["inside"],
        "brightness_outside": change["outside"],
        "brightness_outside_abs": change["outside_abs"],
    }


def quality_report(
    composites: np.ndarray,
    surfaces: np.ndarray,
    clouds: np.ndarray,
    masks: np.ndarray,
    *,
    cloud_fractions: np.ndarray | None = None,
) -> dict[str, Any]:
    """Quality figures of a training set, next to the original 50 % blend on the same inputs.

    Parameters
    ----------
    composites
        ``uint8 (N, H, W, 3)`` the set's composites (as written, normally the alpha blend).
    surfaces, clouds, masks
        The surface, generated cloud and mask behind each composite.
    cloud_fractions
        Cloud fraction of each pair (0..1); default: the mask mean.

    Returns
    -------
    dict
        ``n_pairs``; ``alpha`` (the given composites) and ``original`` (50 % blend of the same
        surfaces, clouds and masks): each ``detector_iou`` (set-wide Otsu threshold),
        ``threshold`` (that threshold, digital numbers), ``detector_iou_per_tile`` (Otsu per
        tile), ``brightness_inside``, ``brightness_outside``, ``brightness_outside_abs``;
        ``iou_gain`` and ``iou_gain_per_tile`` (alpha − original); ``cover_histogram``
        (``edges``, ``counts``).
    """
    comp = _as_images(composites, "composites")
    mask = _as_masks(masks)
    if comp.shape[0] == 0:
        raise CloudGANError("quality report: the training set is empty")
    original = composite(surfaces, clouds, mask.astype(np.uint8), blend="original")
    if cloud_fractions is None:
        cloud_fractions = mask.reshape(mask.shape[0], -1).mean(axis=1)
    surface_b = brightness(surfaces)
    alpha_figures = _figures(comp, surface_b, mask)
    original_figures = _figures(original, surface_b, mask)
    return {
        "n_pairs": int(comp.shape[0]),
        "alpha": alpha_figures,
        "original": original_figures,
        "iou_gain": alpha_figures["detector_iou"] - original_figures["detector_iou"],
        "iou_gain_per_tile": (
            alpha_figures["detector_iou_per_tile"] - original_figures["detector_iou_per_tile"]
        ),
        "cover_histogram": cover_histogram(cloud_fractions),
    }


# --------------------------------------------------------------------------- plot

_BLUE = (52, 101, 164)
_ORANGE = (230, 140, 40)
_GREY = (120, 120, 120)
_INK = (30, 30, 30)


def _bar_panel(draw, box, title, groups, series_colours, value_max, fmt, font) -> None:
    """Draw a grouped bar chart into ``box`` = (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    draw.text((x0, y0), title, fill=_INK, font=font)
    top, bottom = y0 + 30, y1 - 28
    draw.line((x0, bottom, x1, bottom), fill=_INK)
    n_groups = max(len(groups), 1)
    group_w = (x1 - x0) / n_groups
    for g, (label, values) in enumerate(groups):
        gx = x0 + g * group_w
        n = max(len(values), 1)
        bar_w = max(int(group_w * 0.7 / n), 2)
        start = gx + (group_w - bar_w * n) / 2
        for k, value in enumerate(values):
            share = 0.0 if value_max <= 0 else max(min(value / value_max, 1.0), 0.0)
            h = int(round((bottom - top) * share))
            bx = int(start + k * bar_w)
            draw.rectangle((bx, bottom - h, bx + bar_w - 2, bottom), fill=series_colours[k])
            if fmt:
                draw.text((bx, max(bottom - h - 12, top - 12)), fmt(value), fill=_INK, font=font)
        draw.text((int(gx + 2), bottom + 3), label, fill=_INK, font=font)


def report_plot_png(report: dict[str, Any], *, width: int = 720, height: int = 270) -> bytes:
    """A small PNG bar chart of a :func:`quality_report` for the UI (drawn with Pillow).

    Left: detector IoU (set-wide and per-tile Otsu threshold), alpha vs original. Middle: mean
    absolute brightness change inside and outside the mask, alpha vs original. Right: cover
    histogram (10 % bins). Same report, same
    bytes.
    """
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.load_default_imagefont()  # bitmap font: identical on every machine
    except AttributeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    a, o = report["alpha"], report["original"]
    panel_w = width // 3
    _bar_panel(
        draw,
        (10, 8, panel_w - 10, height - 18),
        "detector IoU",
        [
            ("set Otsu", [a["detector_iou"], o["detector_iou"]]),
            ("tile Otsu", [a["detector_iou_per_tile"], o["detector_iou_per_tile"]]),
        ],
        [_BLUE, _ORANGE],
        1.0,
        lambda v: f"{v:.2f}",
        font,
    )
    inside = [abs(a["brightness_inside"]), abs(o["brightness_inside"])]
    outside = [a["brightness_outside_abs"], o["brightness_outside_abs"]]
    _bar_panel(
        draw,
        (panel_w + 10, 8, 2 * panel_w - 10, height - 18),
        "|brightness change| DN",
        [("inside", inside), ("outside", outside)],
        [_BLUE, _ORANGE],
        max(inside + outside + [1.0]),
        lambda v: f"{v:.0f}",
        font,
    )
    counts = report["cover_histogram"]["counts"]
    _bar_panel(
        draw,
        (2 * panel_w + 10, 8, width - 10, height - 18),
        "cover % (10 % bins)",
        [(str(10 * i) if i % 2 == 0 else "", [c]) for i, c in enumerate(counts)],
        [_GREY],
        float(max(counts + [1])),
        None,
        font,
    )
    legend_y = height - 14
    draw.rectangle((10, legend_y, 20, legend_y + 8), fill=_BLUE)
    draw.text((24, legend_y - 2), "alpha composite", fill=_INK, font=font)
    draw.rectangle((140, legend_y, 150, legend_y + 8), fill=_ORANGE)
    draw.text((154, legend_y - 2), "original 50 % blend", fill=_INK, font=font)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()
