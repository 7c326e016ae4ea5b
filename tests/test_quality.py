"""Quality figures: threshold detector, IoU, brightness change, report and its plot."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from cloudgan_core.composite import brightness
from cloudgan_core.errors import CloudGANError
from cloudgan_core.quality import (
    BrightnessChange,
    change_figures,
    detector_iou,
    iou,
    otsu_threshold,
    quality_report,
    report_plot_png,
    threshold_detector,
)


def _smooth(rng: np.random.Generator, n: int, size: int, cell: int) -> np.ndarray:
    """Smooth random field in 0..1: coarse uniform noise, bilinearly enlarged."""
    coarse = rng.random((n, size // cell + 2, size // cell + 2))
    pos = np.linspace(0, coarse.shape[1] - 1.001, size)
    i0 = pos.astype(int)
    f = pos - i0
    rows = coarse[:, i0] * (1 - f)[None, :, None] + coarse[:, i0 + 1] * f[None, :, None]
    return rows[:, :, i0] * (1 - f)[None, None, :] + rows[:, :, i0 + 1] * f[None, None, :]


def synthetic_set(
    seed: int,
    *,
    levels: tuple[float, ...] = (35.0, 90.0),
    n: int = 12,
    size: int = 32,
    leak: float = 0.15,
):
    """Surfaces, generated clouds and masks that look like the pipeline's inputs.

    Surfaces: textured tiles around a level drawn from ``levels`` (35 = ocean, 90 = land,
    150 = bright desert) with a random tint and sensor noise. Masks: smooth random blobs covering
    10-80 % of the tile. Clouds: like CycleGAN output, bright inside the mask (thin, dimmer
    near the edges: 110..240) and dark outside (25..65), and not confined exactly to the mask:
    on a ``leak`` share of the clear pixels there is haze of brightness 90..170.
    """
    rng = np.random.default_rng(seed)
    level = rng.choice(np.asarray(levels), size=n)[:, None, None, None]
    tint = rng.uniform(0.8, 1.2, size=(n, 1, 1, 3))
    texture = _smooth(rng, n, size, 6)[..., None]
    surface = level * tint + 50 * (texture - 0.5) + rng.normal(0, 6, (n, size, size, 3))
    surface = np.clip(surface, 0, 255).astype(np.uint8)

    field = _smooth(rng, n, size, 8)
    cover = rng.uniform(0.1, 0.8, size=n)
    cut = np.array([np.quantile(field[i], 1 - cover[i]) for i in range(n)])[:, None, None]
    masks = (field > cut).astype(np.uint8)
    depth = np.clip((field - cut) * 6, 0, 1)
    inside = 110 + 130 * depth
    outside = 25 + 40 * _smooth(rng, n, size, 4)
    haze_field = _smooth(rng, n, size, 5)
    haze_cut = np.array([np.quantile(haze_field[i], 1 - leak) for i in range(n)])[:, None, None]
    haze = (haze_field > haze_cut) & (masks == 0)
    outside = np.where(haze, rng.uniform(90, 170, size=(n, 1, 1)), outside)
    cloud = np.where(masks == 1, inside, outside)[..., None] + rng.normal(0, 5, (n, size, size, 3))
    clouds = np.clip(cloud, 0, 255).astype(np.uint8)
    return surface, clouds, masks


# --------------------------------------------------------------------------- basic figures


def test_brightness_is_channel_mean() -> None:
    img = np.zeros((1, 2, 2, 3), np.uint8)
    img[0, 0, 0] = (30, 60, 90)
    b = brightness(img)
    assert b.dtype == np.float32 and b.shape == (1, 2, 2)
    assert b[0, 0, 0] == pytest.approx(60.0)
    assert b[0, 1, 1] == 0.0


def test_otsu_threshold_splits_two_levels() -> None:
    img = np.full((2, 4, 4, 3), 40, np.uint8)
    img[1] = 200
    t = otsu_threshold(brightness(img))
    assert 40 <= t < 200
    det = threshold_detector(img)
    assert not det[0].any() and det[1].all()


def test_constant_set_detects_nothing() -> None:
    img = np.full((2, 4, 4, 3), 77, np.uint8)
    assert otsu_threshold(brightness(img)) == 77.0
    assert not threshold_detector(img).any()
    assert not threshold_detector(img, per_tile=True).any()


def test_explicit_threshold_and_per_tile() -> None:
    img = np.full((2, 4, 4, 3), 20, np.uint8)
    img[0, :2] = 100  # tile 0: 20 / 100
    img[1] = 150
    img[1, :2] = 250  # tile 1: 150 / 250
    fixed = threshold_detector(img, threshold=120)
    assert not fixed[0].any() and fixed[1].all()  # one threshold for all tiles
    per_tile = threshold_detector(img, per_tile=True)
    assert per_tile[0, :2].all() and not per_tile[0, 2:].any()
    assert per_tile[1, :2].all() and not per_tile[1, 2:].any()


def test_iou_values() -> None:
    a = np.array([[1, 1, 0, 0]], bool)
    b = np.array([[0, 1, 1, 0]], bool)
    assert iou(a, b) == pytest.approx(1 / 3)
    assert iou(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 1.0
    with pytest.raises(CloudGANError):
        iou(a, np.zeros((2, 2), bool))


def test_detector_iou_perfect_on_clean_contrast() -> None:
    masks = np.zeros((2, 8, 8), np.uint8)
    masks[:, 2:6, 2:6] = 1
    img = np.repeat(np.where(masks[..., None] == 1, 230, 30).astype(np.uint8), 3, axis=-1)
    assert detector_iou(img, masks) == 1.0


def test_brightness_change_inside_outside() -> None:
    surf = np.full((1, 4, 4, 3), 50, np.uint8)
    masks = np.zeros((1, 4, 4), np.uint8)
    masks[0, :2] = 1
    comp = surf.copy()
    comp[0, :2] = 150
    comp[0, 3, 3] = 40
    ch = change_figures(brightness(comp) - brightness(surf), masks.astype(bool))
    assert ch.inside == pytest.approx(100.0)
    assert ch.outside == pytest.approx(-10.0 / 8)
    assert ch.outside_abs == pytest.approx(10.0 / 8)
    assert ch.inside_abs == pytest.approx(100.0)
    assert change_figures(np.zeros((1, 2, 2), np.float32), np.zeros((1, 2, 2), bool)) == BrightnessChange(0, 0, 0, 0)


# --------------------------------------------------------------------------- mask-exact composite vs original


def _exact(surface: np.ndarray, clouds: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """A mask-exact composite: the generated cloud inside the mask, the surface byte for byte outside."""
    return np.where(masks[..., None] == 1, clouds, surface)


def test_report_figures_of_an_exact_composite_and_the_original_blend() -> None:
    """Same surfaces, clouds and masks for both. The generated clouds leak haze outside their masks
    (as CycleGAN output does): the exact composite never shows it (outside the mask every pixel is the
    surface, brightness change 0), the 50 % blend does."""
    for seed in range(3):
        surface, clouds, masks = synthetic_set(seed)
        images = _exact(surface, clouds, masks)
        report = quality_report(images, surface, clouds, masks)
        a, o = report.composite, report.original
        assert report.iou_gain == pytest.approx(a.detector_iou - o.detector_iou)
        assert report.iou_gain_per_tile == pytest.approx(a.detector_iou_per_tile - o.detector_iou_per_tile)
        assert a.brightness_outside == 0.0 and a.brightness_outside_abs == 0.0
        assert o.brightness_outside_abs > 5.0 and a.brightness_inside > 40.0
        assert a.detector_iou == pytest.approx(detector_iou(images, masks))
        # a shadow (darkened clear pixels) is left out of "outside", not counted as a change
        shadows = np.zeros_like(masks)
        shadows[:, -3:] = masks[:, -3:] == 0
        darker = images.copy()
        darker[shadows == 1] //= 2
        shaded = quality_report(darker, surface, clouds, masks, shadows=shadows)
        assert shaded.composite.brightness_outside_abs == 0.0
        assert quality_report(darker, surface, clouds, masks).composite.brightness_outside_abs > 0.0
        assert report.realism == {} and report.targets_met == {}  # no bands given: no realism figures


def test_report_histogram_and_counts() -> None:
    surface, clouds, masks = synthetic_set(1)
    report = quality_report(_exact(surface, clouds, masks), surface, clouds, masks)
    assert report.n_pairs == 12
    hist = report.cover_histogram
    assert len(hist["edges"]) == 11 and len(hist["counts"]) == 10
    assert hist["edges"] == [10.0 * k for k in range(11)]  # percent
    assert sum(hist["counts"]) == 12
    fractions = masks.reshape(12, -1).mean(axis=1)
    assert hist["counts"] == np.histogram(fractions, bins=np.linspace(0, 1, 11))[0].tolist()
    assert report.as_dict()["composite"]["detector_iou"] == report.composite.detector_iou
    assert "| detector IoU (set Otsu) |" in report.table_markdown()


def test_report_rejects_empty_set() -> None:
    empty = np.zeros((0, 4, 4, 3), np.uint8)
    with pytest.raises(CloudGANError):
        quality_report(empty, empty, empty, np.zeros((0, 4, 4), np.uint8))


def test_report_plot_png_is_deterministic_png() -> None:
    surface, clouds, masks = synthetic_set(2, n=6, size=16)
    report = quality_report(_exact(surface, clouds, masks), surface, clouds, masks)
    png = report_plot_png(report)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert report_plot_png(report) == png
    with Image.open(io.BytesIO(png)) as im:
        assert im.size == (720, 270)
        pixels = np.asarray(im.convert("RGB"))
    assert (pixels == (52, 101, 164)).all(axis=-1).any()  # composite bars drawn
    assert (pixels == (230, 140, 40)).all(axis=-1).any()  # original bars drawn
    other = replace(report, composite=replace(report.composite, detector_iou=0.0))
    assert report_plot_png(other) != png
