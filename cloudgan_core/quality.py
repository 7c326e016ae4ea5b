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

:func:`otsu_threshold` and :func:`iou` are the project's one Otsu threshold and one IoU (the
generator evaluation of :mod:`cloudgan_core.gan.evaluate` uses them too); the brightness is
:func:`cloudgan_core.composite.brightness`.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass

import numpy as np

from cloudgan_core.composite import _as_images, _as_masks, brightness, composite
from cloudgan_core.cover import cover_histogram
from cloudgan_core.errors import CloudGANError


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold of ``values`` (any shape, e.g. :func:`~cloudgan_core.composite.brightness`).

    The one Otsu threshold of the project: the 256-bin histogram of the values over their range
    is split where the between-class variance is largest (``skimage.filters.threshold_otsu``);
    ``values > t`` is the bright class. Constant values return that value, so nothing is above it.

    Raises
    ------
    CloudGANError
        ``values`` is empty.
    """
    from skimage.filters import threshold_otsu

    b = np.asarray(values)
    if b.size == 0:
        raise CloudGANError("no values to compute a threshold of (empty set)")
    lo, hi = float(b.min()), float(b.max())
    if lo == hi:
        return lo
    return float(threshold_otsu(b.ravel(), nbins=256))


def _detect(b: np.ndarray, threshold: float | None, per_tile: bool) -> np.ndarray:
    """Threshold detector on precomputed brightness ``b`` (N, H, W)."""
    if threshold is not None:
        return b > np.float32(threshold)
    if not per_tile:
        return b > np.float32(otsu_threshold(b))
    out = np.empty(b.shape, dtype=bool)
    for i in range(b.shape[0]):
        out[i] = b[i] > np.float32(otsu_threshold(b[i]))
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
        of the brightness of the whole set (:func:`otsu_threshold`), one threshold for all tiles.
    per_tile
        With ``threshold=None``, compute the Otsu threshold of each tile separately instead.
        This takes tile-to-tile surface brightness out of the picture, but it always splits a
        tile in two, so it over-detects on clear tiles (and on fully cloudy ones).

    Returns
    -------
    numpy.ndarray
        ``bool (N, H, W)``, True = detected cloud.
    """
    return _detect(brightness(_as_images(images, "images")), threshold, per_tile)


def iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two boolean masks, pooled over all pixels (1.0 if both empty).

    The one IoU of the project (the quality report and the generator evaluation use it).
    """
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


@dataclass(frozen=True)
class BrightnessChange:
    """Mean brightness change (digital numbers) over the cloud pixels (``inside``) and the clear
    ones (``outside``), signed and absolute; a region without pixels gives 0.0."""

    inside: float
    outside: float
    inside_abs: float
    outside_abs: float


def change_figures(delta: np.ndarray, cloud: np.ndarray) -> BrightnessChange:
    """Mean signed and absolute ``delta`` (brightness of composite − surface, any shape) inside
    and outside the boolean ``cloud`` mask of the same shape."""

    def mean(values: np.ndarray) -> float:
        return float(values.mean(dtype=np.float64)) if values.size else 0.0

    inside, outside = delta[cloud], delta[~cloud]
    return BrightnessChange(inside=mean(inside), outside=mean(outside), inside_abs=mean(np.abs(inside)),
                            outside_abs=mean(np.abs(outside)))


@dataclass(frozen=True)
class BlendFigures:
    """The report figures of one set of composites.

    Attributes
    ----------
    detector_iou
        IoU of the set-wide Otsu threshold detector against the masks.
    threshold
        That threshold (digital numbers).
    detector_iou_per_tile
        IoU with an Otsu threshold per tile.
    brightness_inside, brightness_outside, brightness_outside_abs
        Mean brightness change from surface to composite inside the mask, outside it, and its
        absolute value outside (digital numbers; 0 outside for an exact-mask composite).
    """

    detector_iou: float
    threshold: float
    detector_iou_per_tile: float
    brightness_inside: float
    brightness_outside: float
    brightness_outside_abs: float


def blend_figures(images: np.ndarray, surface_brightness: np.ndarray, cloud: np.ndarray) -> BlendFigures:
    """:class:`BlendFigures` of composites ``images`` (``uint8 (N, H, W, 3)``) over surfaces of
    brightness ``surface_brightness`` (``(N, H, W)``) with the boolean masks ``cloud``."""
    images = _as_images(images, "composites")
    if images.shape[:3] != cloud.shape or surface_brightness.shape != cloud.shape:
        raise CloudGANError(
            f"composites {images.shape}, surfaces {surface_brightness.shape} and masks {cloud.shape} "
            "do not pair up"
        )
    b = brightness(images)
    threshold = otsu_threshold(b)
    change = change_figures(b - surface_brightness, cloud)
    return BlendFigures(
        detector_iou=iou(_detect(b, threshold, False), cloud),
        threshold=threshold,
        detector_iou_per_tile=iou(_detect(b, None, True), cloud),
        brightness_inside=change.inside,
        brightness_outside=change.outside,
        brightness_outside_abs=change.outside_abs,
    )


@dataclass(frozen=True)
class QualityReport:
    """Quality figures of a training set next to the original 50 % blend (see :func:`quality_report`).

    Attributes
    ----------
    n_pairs
        Pairs in the set.
    alpha, original
        :class:`BlendFigures` of the set's composites and of the 50 % blend of the same inputs.
    iou_gain, iou_gain_per_tile
        ``alpha − original`` detector IoU (set-wide and per-tile Otsu threshold).
    cover_histogram
        Cloud cover of the pairs, :func:`cloudgan_core.cover.cover_histogram` (``edges`` in
        percent, ``counts``).
    """

    n_pairs: int
    alpha: BlendFigures
    original: BlendFigures
    iou_gain: float
    iou_gain_per_tile: float
    cover_histogram: dict[str, list]

    def as_dict(self) -> dict:
        """The report as plain JSON types (what ``report.json`` holds)."""
        return asdict(self)

    def table_markdown(self) -> str:
        """The main figures, alpha composite vs original blend, as a Markdown table."""
        a, o = self.alpha, self.original
        rows = [("detector IoU (set Otsu)", f"{a.detector_iou:.3f}", f"{o.detector_iou:.3f}"),
                ("detector IoU (per-tile Otsu)", f"{a.detector_iou_per_tile:.3f}", f"{o.detector_iou_per_tile:.3f}"),
                ("Otsu threshold (DN)", f"{a.threshold:.1f}", f"{o.threshold:.1f}"),
                ("brightness change inside mask (DN)", f"{a.brightness_inside:+.1f}", f"{o.brightness_inside:+.1f}"),
                ("brightness change outside mask (DN)", f"{a.brightness_outside:+.1f}",
                 f"{o.brightness_outside:+.1f}"),
                ("mean abs change outside mask (DN)", f"{a.brightness_outside_abs:.2f}",
                 f"{o.brightness_outside_abs:.2f}")]
        lines = ["| figure | alpha composite | original 50 % blend |", "|---|---|---|"]
        return "\n".join(lines + [f"| {name} | {x} | {y} |" for name, x, y in rows])


def quality_report(
    composites: np.ndarray,
    surfaces: np.ndarray,
    clouds: np.ndarray,
    masks: np.ndarray,
    *,
    cover: np.ndarray | None = None,
) -> QualityReport:
    """Quality figures of a training set, next to the original 50 % blend on the same inputs.

    Parameters
    ----------
    composites
        ``uint8 (N, H, W, 3)`` the set's composites (as written, normally the alpha blend).
    surfaces, clouds, masks
        The surface, generated cloud and mask behind each composite.
    cover
        Cloud cover of each pair in percent (0..100); default: from the masks.

    Returns
    -------
    QualityReport
    """
    comp = _as_images(composites, "composites")
    mask = _as_masks(masks)
    if comp.shape[0] == 0:
        raise CloudGANError("quality report: the training set is empty")
    original = composite(surfaces, clouds, mask.astype(np.uint8), blend="original")
    if cover is None:
        cover = 100.0 * mask.reshape(mask.shape[0], -1).mean(axis=1)
    surface_b = brightness(_as_images(surfaces, "surfaces"))
    alpha_figures = blend_figures(comp, surface_b, mask)
    original_figures = blend_figures(original, surface_b, mask)
    return QualityReport(
        n_pairs=int(comp.shape[0]),
        alpha=alpha_figures,
        original=original_figures,
        iou_gain=alpha_figures.detector_iou - original_figures.detector_iou,
        iou_gain_per_tile=alpha_figures.detector_iou_per_tile - original_figures.detector_iou_per_tile,
        cover_histogram=cover_histogram(cover),
    )


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


def report_plot_png(report: QualityReport, *, width: int = 720, height: int = 270) -> bytes:
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
    a, o = report.alpha, report.original
    panel_w = width // 3
    _bar_panel(
        draw,
        (10, 8, panel_w - 10, height - 18),
        "detector IoU",
        [
            ("set Otsu", [a.detector_iou, o.detector_iou]),
            ("tile Otsu", [a.detector_iou_per_tile, o.detector_iou_per_tile]),
        ],
        [_BLUE, _ORANGE],
        1.0,
        lambda v: f"{v:.2f}",
        font,
    )
    inside = [abs(a.brightness_inside), abs(o.brightness_inside)]
    outside = [a.brightness_outside_abs, o.brightness_outside_abs]
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
    counts = report.cover_histogram["counts"]
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
