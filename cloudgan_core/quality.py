"""Figures a user compares models and composite settings by.

* **Detector IoU**: a simple brightness-threshold cloud detector (pixel is cloud where its mean
  RGB exceeds a threshold; by default the Otsu threshold over the whole set) is run on the
  composites, and its output compared with the true masks as intersection over union, pooled
  over all pixels of the set. A composite whose clouds are where the mask says (and nowhere else)
  scores high.
* **Brightness change**: mean of ``brightness(composite) − brightness(surface)`` inside the mask
  and outside it (digital numbers). An exact-mask composite has 0 outside.

:func:`quality_report` gives both figures for the rendered composite and for the original 50 % blend
on the same inputs, plus the realism figures of both (:func:`cloudgan_core.realism.realism_figures`:
texture, checkerboard artefacts, edge opacity, spectral signature) against :data:`REALISM_TARGETS`,
and the cover histogram; :func:`report_plot_png` draws them as a PNG.

The set-wide threshold cannot tell a bright surface from cloud, and the original blend's per-image
stretch takes tile-to-tile brightness out; so the report also gives the IoU with an Otsu threshold
per tile, which compares the two blends on equal terms.

:func:`otsu_threshold` and :func:`iou` are the project's one Otsu threshold and one IoU (the
generator evaluation of :mod:`cloudgan_core.gan.evaluate` uses them too); the brightness is
:func:`cloudgan_core.composite.brightness`.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field

import numpy as np

from cloudgan_core.composite import _as_images, _as_masks, brightness, original_blend
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


def blend_figures(images: np.ndarray, surface_brightness: np.ndarray, cloud: np.ndarray,
                  shadow: np.ndarray | None = None) -> BlendFigures:
    """:class:`BlendFigures` of composites ``images`` (``uint8 (N, H, W, 3)``) over surfaces of
    brightness ``surface_brightness`` (``(N, H, W)``) with the boolean masks ``cloud``; pixels of
    the boolean ``shadow`` masks (darkened on purpose) count neither inside nor outside."""
    images = _as_images(images, "composites")
    if images.shape[:3] != cloud.shape or surface_brightness.shape != cloud.shape:
        raise CloudGANError(
            f"composites {images.shape}, surfaces {surface_brightness.shape} and masks {cloud.shape} "
            "do not pair up"
        )
    b = brightness(images)
    threshold = otsu_threshold(b)
    delta = b - surface_brightness
    if shadow is None:
        change = change_figures(delta, cloud)
    else:
        keep = ~(shadow & ~cloud)
        change = change_figures(delta[keep], cloud[keep])
    return BlendFigures(
        detector_iou=iou(_detect(b, threshold, False), cloud),
        threshold=threshold,
        detector_iou_per_tile=iou(_detect(b, None, True), cloud),
        brightness_inside=change.inside,
        brightness_outside=change.outside,
        brightness_outside_abs=change.outside_abs,
    )


#: Realism targets (issue 11) of the rendered composites: figure → (lowest, highest), None = open.
REALISM_TARGETS: dict[str, tuple[float | None, float | None]] = {
    "texture_slope": (-3.3, -2.0), "texture_cv": (0.10, None), "nyquist_ratio": (None, 2.0),
    "half_nyquist_ratio": (None, 2.0), "edge_opacity_ratio": (None, 0.5), "bright_cold_fraction": (0.95, None),
}
#: Most pairs the realism figures are computed on (the first ones in pair order; bounds memory).
MAX_REALISM_PAIRS = 512


def target_met(name: str, value: float | None) -> bool | None:
    """Whether figure ``name`` meets its :data:`REALISM_TARGETS` range (None: no value or no target)."""
    if name not in REALISM_TARGETS or value is None or value != value:  # NaN
        return None
    low, high = REALISM_TARGETS[name]
    return (low is None or value >= low) and (high is None or value <= high)


def _target_label(name: str) -> str:
    low, high = REALISM_TARGETS[name]
    if low is not None and high is not None:
        return f"[{low:g}, {high:g}]"
    return f">= {low:g}" if low is not None else f"<= {high:g}"


@dataclass(frozen=True)
class QualityReport:
    """Quality figures of a training set next to the original 50 % blend (see :func:`quality_report`).

    Attributes
    ----------
    n_pairs
        Pairs in the set.
    generator
        The cloud generator of the set (``gan``, ``procedural``, or ``""`` when unknown).
    composite, original
        :class:`BlendFigures` of the set's composites and of the 50 % blend of the same inputs.
    iou_gain, iou_gain_per_tile
        ``composite − original`` detector IoU (set-wide and per-tile Otsu threshold).
    cover_histogram
        Cloud cover of the pairs, :func:`cloudgan_core.cover.cover_histogram` (``edges`` in
        percent, ``counts``).
    realism
        ``{"composite": ..., "original": ...}``: :meth:`cloudgan_core.realism.RealismFigures.as_dict`
        of the composites (on their bands, with the false colour for the detector figures) and of the
        original blend (false colour only: its spectral figures are None); empty without the bands.
    realism_pairs
        Pairs the realism figures were computed on (the first, at most :data:`MAX_REALISM_PAIRS`).
    targets_met
        The composites' realism figures against :data:`REALISM_TARGETS` (None: no value).
    """

    n_pairs: int
    generator: str
    composite: BlendFigures
    original: BlendFigures
    iou_gain: float
    iou_gain_per_tile: float
    cover_histogram: dict[str, list]
    realism: dict[str, dict] = field(default_factory=dict)
    realism_pairs: int = 0
    targets_met: dict[str, bool | None] = field(default_factory=dict)

    def as_dict(self) -> dict:
        """The report as plain JSON types (what ``report.json`` holds)."""
        return asdict(self)

    def table_markdown(self) -> str:
        """The main figures, rendered composite vs original blend, as a Markdown table."""
        a, o = self.composite, self.original
        rows = [("detector IoU (set Otsu)", f"{a.detector_iou:.3f}", f"{o.detector_iou:.3f}", ""),
                ("detector IoU (per-tile Otsu)", f"{a.detector_iou_per_tile:.3f}", f"{o.detector_iou_per_tile:.3f}",
                 ""),
                ("Otsu threshold (DN)", f"{a.threshold:.1f}", f"{o.threshold:.1f}", ""),
                ("brightness change inside mask (DN)", f"{a.brightness_inside:+.1f}", f"{o.brightness_inside:+.1f}",
                 ""),
                ("brightness change outside cloud and shadow (DN)", f"{a.brightness_outside:+.1f}",
                 f"{o.brightness_outside:+.1f}", ""),
                ("mean abs change outside cloud and shadow (DN)", f"{a.brightness_outside_abs:.2f}",
                 f"{o.brightness_outside_abs:.2f}", "0")]
        if self.realism:
            comp, orig = self.realism["composite"], self.realism["original"]
            for name in ("texture_slope", "texture_cv", "nyquist_ratio", "half_nyquist_ratio", "edge_opacity_ratio",
                         "bright_cold_fraction", "s5_s3_cloud", "s5_s3_snow"):
                rows.append((name, _fmt(comp.get(name)), _fmt(orig.get(name)),
                             _target_label(name) if name in REALISM_TARGETS else ""))
        lines = [f"| figure | composite ({self.generator or 'generator?'}) | original 50 % blend | target |",
                 "|---|---|---|---|"]
        return "\n".join(lines + [f"| {name} | {x} | {y} | {t} |" for name, x, y, t in rows])


def _fmt(value: object) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def quality_report(
    composites: np.ndarray,
    surfaces: np.ndarray,
    clouds: np.ndarray,
    masks: np.ndarray,
    *,
    cover: np.ndarray | None = None,
    shadows: np.ndarray | None = None,
    bands: np.ndarray | None = None,
    surface_bands: np.ndarray | None = None,
    snow: np.ndarray | None = None,
    generator: str = "",
) -> QualityReport:
    """Quality and realism figures of a training set, next to the original 50 % blend on the same inputs.

    Parameters
    ----------
    composites
        ``uint8 (N, H, W, 3)`` the set's composites (false colour, as written).
    surfaces, clouds, masks
        The surface, the cloud's picture and the cloud mask behind each composite.
    cover
        Cloud cover of each pair in percent (0..100); default: from the masks.
    shadows
        Optional ``(N, H, W)`` shadow masks (left out of the "outside" brightness figures).
    bands, surface_bands
        Optional ``float (M, 9, H, W)`` bands of the first M <= N composites and surfaces: with
        them the realism figures are computed on those M pairs (at most :data:`MAX_REALISM_PAIRS`).
    snow
        Optional ``(M, H, W)`` snow masks of the surfaces (for the S5/S3 of snow).
    generator
        Name of the cloud generator, for the report.

    Returns
    -------
    QualityReport
    """
    from cloudgan_core.realism import realism_figures

    comp = _as_images(composites, "composites")
    mask = _as_masks(masks)
    if comp.shape[0] == 0:
        raise CloudGANError("quality report: the training set is empty")
    surf = _as_images(surfaces, "surfaces")
    original = original_blend(surf, clouds)
    shade = None if shadows is None else _as_masks(shadows, "shadows")
    if cover is None:
        cover = 100.0 * mask.reshape(mask.shape[0], -1).mean(axis=1)
    surface_b = brightness(surf)
    composite_figures = blend_figures(comp, surface_b, mask, shade)
    original_figures = blend_figures(original, surface_b, mask)
    realism: dict[str, dict] = {}
    m = 0
    if bands is not None and surface_bands is not None:
        m = min(len(bands), MAX_REALISM_PAIRS)
        part = slice(0, m)
        realism["composite"] = realism_figures(
            np.asarray(bands[part]), np.asarray(surface_bands[part]), mask[part],
            shadows=None if shade is None else shade[part], snow=None if snow is None else np.asarray(snow[part]),
            false_colour=(comp[part], surf[part])).as_dict()
        realism["original"] = realism_figures(original[part], surf[part], mask[part]).as_dict()
    met = {name: target_met(name, realism["composite"].get(name)) for name in REALISM_TARGETS} if realism else {}
    return QualityReport(
        n_pairs=int(comp.shape[0]),
        generator=generator,
        composite=composite_figures,
        original=original_figures,
        iou_gain=composite_figures.detector_iou - original_figures.detector_iou,
        iou_gain_per_tile=composite_figures.detector_iou_per_tile - original_figures.detector_iou_per_tile,
        cover_histogram=cover_histogram(cover),
        realism=realism,
        realism_pairs=m,
        targets_met=met,
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


#: Height of the realism table under the bar charts, px (one line per figure).
_TABLE_LINE = 14


def report_plot_png(report: QualityReport, *, width: int = 720, height: int = 270) -> bytes:
    """A small PNG of a :func:`quality_report` for the UI (drawn with Pillow).

    Top, left: detector IoU (set-wide and per-tile Otsu threshold), composite vs original. Middle:
    mean absolute brightness change inside the mask and outside cloud and shadow. Right: cover
    histogram (10 % bins). Below (when the report has them): the realism figures of the composites
    (with the generator's name) and of the original blend, each target and whether it is met.
    Same report, same bytes.
    """
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.load_default_imagefont()  # bitmap font: identical on every machine
    except AttributeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    names = [n for n in ("texture_slope", "texture_cv", "nyquist_ratio", "half_nyquist_ratio", "edge_opacity_ratio",
                         "bright_cold_fraction", "s5_s3_cloud", "s5_s3_snow") if report.realism]
    table_h = (len(names) + 2) * _TABLE_LINE + 8 if names else 0
    img = Image.new("RGB", (width, height + table_h), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    a, o = report.composite, report.original
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
    draw.text((24, legend_y - 2), f"composite ({report.generator or '?'})", fill=_INK, font=font)
    draw.rectangle((180, legend_y, 190, legend_y + 8), fill=_ORANGE)
    draw.text((194, legend_y - 2), "original 50 % blend", fill=_INK, font=font)
    if names:
        comp, orig = report.realism["composite"], report.realism["original"]
        y = height + 4
        columns = (10, 200, 330, 460, 580)
        for x, text in zip(columns, ("realism figure", f"composite ({report.generator or '?'})", "original blend",
                                     "target", "met")):
            draw.text((x, y), text, fill=_INK, font=font)
        draw.line((10, y + _TABLE_LINE - 2, width - 10, y + _TABLE_LINE - 2), fill=_GREY)
        for name in names:
            y += _TABLE_LINE
            met = report.targets_met.get(name)
            cells = (name, _fmt(comp.get(name)), _fmt(orig.get(name)),
                     _target_label(name) if name in REALISM_TARGETS else "",
                     "" if met is None else ("yes" if met else "NO"))
            for x, text in zip(columns, cells):
                draw.text((x, y), text, fill=_INK, font=font)
        draw.text((10, y + _TABLE_LINE), f"on the first {report.realism_pairs} pairs; original: false colour only",
                  fill=_GREY, font=font)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()
