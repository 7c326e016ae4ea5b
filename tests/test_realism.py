"""Realism figures: texture slope, (half-)Nyquist spikes, edge opacity, spectral signature."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import ndimage

from cloudgan_core.composite import brightness
from cloudgan_core.errors import CloudGANError
from cloudgan_core.quality import change_figures, detector_iou
from cloudgan_core.realism import (
    BANDS,
    RealismFigures,
    artifacts,
    band_index,
    edge_opacity,
    opacity,
    realism_figures,
    spectral,
    texture,
)
from cloudgan_core.slstr.radiance import false_color

SIZE = 256
S3, S5, S8 = band_index("S3"), band_index("S5"), band_index("S8")


def fractal(rng: np.random.Generator, n: int, beta: float, mean: float, std: float) -> np.ndarray:
    """``float32 (n, SIZE, SIZE)`` periodic field with power spectrum ∝ |k|^−beta (FFT-filtered noise).

    Each tile is scaled to exactly ``mean`` and ``std``.
    """
    k = np.fft.fftfreq(SIZE)
    radius = np.hypot(k[:, None], k[None, :])
    radius[0, 0] = np.inf
    spectrum = np.fft.fft2(rng.standard_normal((n, SIZE, SIZE))) * radius ** (-beta / 2)
    field = np.fft.ifft2(spectrum).real
    field = (field - field.mean(axis=(1, 2), keepdims=True)) / field.std(axis=(1, 2), keepdims=True)
    return (mean + std * field).astype(np.float32)


def bands(s3: np.ndarray, *, s5: np.ndarray | float | None = None, s8: np.ndarray | float = 280.0) -> np.ndarray:
    """``(N, 9, H, W)`` band array around an S3 plane: S1, S2, S4 = S3, S5/S6 = ``s5`` (default
    0.8·S3), S7–S9 = ``s8`` kelvin."""
    s3 = np.asarray(s3, np.float32)
    out = np.empty((s3.shape[0], len(BANDS), *s3.shape[1:]), np.float32)
    for name in ("S1", "S2", "S3", "S4"):
        out[:, band_index(name)] = s3
    for name in ("S5", "S6"):
        out[:, band_index(name)] = 0.8 * s3 if s5 is None else s5
    for name in ("S7", "S8", "S9"):
        out[:, band_index(name)] = s8
    return out


def to_false_colour(b: np.ndarray) -> np.ndarray:
    """The project's false colour of a band array (G = S3 × 255)."""
    return false_color(b[:, band_index("S1")], b[:, S3], b[:, S5])


def blobs(rng: np.random.Generator, n: int, cover: float = 0.5, smooth: float = 10.0) -> np.ndarray:
    """Curvy cloud masks: smoothed noise above its ``1 − cover`` quantile."""
    field = ndimage.gaussian_filter(rng.random((n, SIZE, SIZE)), (0, smooth, smooth))
    return field > np.quantile(field, 1 - cover, axis=(1, 2), keepdims=True)


def checkerboard(amplitude: float) -> np.ndarray:
    """±``amplitude`` with period 2 px in x and y: (−1)^(x+y)."""
    y, x = np.indices((SIZE, SIZE))
    return (amplitude * (1 - 2 * ((x + y) % 2))).astype(np.float32)


@pytest.fixture(scope="module")
def surface() -> np.ndarray:
    """Six textured land-like S3 surfaces (reflectance 0.15 ± 0.04)."""
    return fractal(np.random.default_rng(11), 6, 3.0, 0.15, 0.04)


# --------------------------------------------------------------------------- texture


@pytest.mark.parametrize("beta", [2.0, 3.0, 3.5])
def test_slope_of_a_fractal_field(beta: float) -> None:
    cloud = fractal(np.random.default_rng(int(beta * 10)), 4, beta, 0.5, 0.08)
    masks = np.ones(cloud.shape, bool)
    t = texture(bands(cloud), bands(np.zeros_like(cloud)), masks)
    assert abs(t.slope + beta) <= 0.2
    assert t.windows == 4 * 7 * 7 and t.tiles == 4  # every 64-px window at stride 32 of a 256² tile
    assert t.cv == pytest.approx(0.08 / 0.5, rel=1e-3)  # whole tile is core: std/mean exactly


def test_texture_uses_only_windows_inside_the_eroded_mask() -> None:
    cloud = fractal(np.random.default_rng(5), 2, 3.0, 0.5, 0.08)
    masks = np.zeros(cloud.shape, bool)
    masks[0, 10:10 + 64 + 8, 20:20 + 64 + 8] = True  # core 64 × 64, but off the 32-px window grid: no window
    masks[1, 0:71, 0:71] = True  # core 67 × 67 from the tile corner (border does not erode): one window
    t = texture(bands(cloud), bands(np.zeros_like(cloud)), masks)
    assert (t.windows, t.tiles) == (1, 1)
    core = cloud[1, :67, :67]
    assert t.cv == pytest.approx(core.std() / core.mean(), rel=1e-4)


# --------------------------------------------------------------------------- artefacts


def test_checkerboard_shows_at_nyquist_only() -> None:
    cloud = fractal(np.random.default_rng(3), 4, 3.0, 0.5, 0.08)
    masks, zero = np.ones(cloud.shape, bool), bands(np.zeros_like(cloud))
    clean = artifacts(bands(cloud), zero, masks)
    assert clean.windows == 196
    assert clean.nyquist <= 1.5 and clean.half_nyquist <= 1.5

    dotted = artifacts(bands(cloud + checkerboard(0.03 * 0.5)), zero, masks)  # ±3 % of the mean
    assert dotted.nyquist > 10  # not diluted by its own Hann leakage (the 8 nearest bins would cap it at 4)
    assert dotted.half_nyquist <= 1.5

    y, x = np.indices((SIZE, SIZE))
    period4 = (0.03 * 0.5 * np.cos(np.pi * x / 2) * np.cos(np.pi * y / 2)).astype(np.float32)
    coarse = artifacts(bands(cloud + period4), zero, masks)
    assert coarse.half_nyquist > 2
    assert coarse.nyquist <= 1.5


def test_checkerboard_along_cloud_edges_is_caught_by_edge_windows(surface: np.ndarray) -> None:
    rng = np.random.default_rng(4)
    masks = blobs(rng, 6, cover=0.7, smooth=16)
    cloud = fractal(rng, 6, 3.0, 0.6, 0.05)
    hard = np.where(masks, cloud, surface)
    clean = artifacts(bands(hard), bands(surface), masks)
    assert clean.edge_windows > 100 and clean.windows > 10
    assert clean.edge_nyquist <= 1.5 and clean.edge_half_nyquist <= 1.5  # curvy hard edges are no spike

    depth = np.stack([ndimage.distance_transform_cdt(m, metric="chessboard") for m in masks])
    dotted = hard + np.where(masks & (depth <= 3), checkerboard(0.02), 0)  # dots within 3 px of the edge
    found = artifacts(bands(dotted), bands(surface), masks)
    assert found.edge_nyquist > 2
    assert found.nyquist == pytest.approx(clean.nyquist)  # the eroded core never sees them


@pytest.mark.parametrize("shape", ["rectangle", "diagonal", "slope_2"])
def test_straight_hard_edges_are_not_artefacts(surface: np.ndarray, shape: str) -> None:
    y, x = np.indices((SIZE, SIZE))
    plate = {
        "rectangle": (y >= 40) & (y < 200) & (x >= 60) & (x < 180),
        "diagonal": x > y,  # a 45° pixel staircase puts a line of power through (½, ½)
        "slope_2": 2 * x > y + 50,
    }[shape]
    masks = np.broadcast_to(plate, surface.shape)
    noise = np.random.default_rng(6).normal(0, 0.005, surface.shape).astype(np.float32)
    a = artifacts(bands(np.where(masks, 0.7 + noise, surface)), bands(surface), masks)
    assert a.edge_windows > 0
    assert a.edge_nyquist <= 1.5 and a.edge_half_nyquist <= 1.5


# --------------------------------------------------------------------------- edges


def test_hard_plate_reads_one_and_tapered_cloud_under_half(surface: np.ndarray) -> None:
    masks = blobs(np.random.default_rng(7), 6)
    hard = edge_opacity(bands(np.where(masks, np.float32(0.7), surface)), bands(surface), masks)
    assert hard.ratio == pytest.approx(1.0, abs=0.01)  # α = (0.7 − R_s)/(1 − R_s) follows the surface a little
    assert hard.ring_pixels > 0 and hard.core_pixels > 0 and hard.tiles == 6

    depth = np.stack([ndimage.distance_transform_cdt(m, metric="chessboard") for m in masks])
    alpha = np.clip(depth / 10.0, 0, 1).astype(np.float32)  # 0.1 on the ring, 1 from 10 px in
    soft = edge_opacity(bands(surface * (1 - alpha) + alpha), bands(surface), masks)  # white cloud: α read back
    assert soft.ratio < 0.5
    assert soft.ring == pytest.approx(0.1, abs=1e-4)


def test_opacity_formula_and_saturated_surface() -> None:
    comp = np.array([0.6, 0.1, 1.0, 0.5, np.nan], np.float32)
    surf = np.array([0.2, 0.2, 0.2, 1.0, 0.2], np.float32)
    a = opacity(comp, surf)
    assert a[0] == pytest.approx(0.5) and a[1] == 0.0 and a[2] == 1.0
    assert np.isnan(a[3]) and np.isnan(a[4])  # no headroom above a saturated surface; NaN stays NaN


# --------------------------------------------------------------------------- spectral


def test_bright_and_cold_fraction() -> None:
    masks = np.zeros((2, 8, 8), bool)
    masks[:, 2:6, 2:6] = True
    surf = bands(np.full((2, 8, 8), 0.2), s8=290.0)
    warm_dark = np.full((2, 8, 8), 0.1, np.float32)
    assert spectral(bands(np.full((2, 8, 8), 0.6), s8=250.0), surf, masks).bright_cold_fraction == 1.0
    assert spectral(bands(warm_dark, s8=250.0), surf, masks).bright_cold_fraction == 0.0  # darker
    assert spectral(bands(np.full((2, 8, 8), 0.6), s8=295.0), surf, masks).bright_cold_fraction == 0.0  # warmer
    half = bands(np.where(np.arange(8) < 4, 0.6, 0.1) * np.ones((2, 8, 8), np.float32), s8=250.0)
    s = spectral(half, surf, masks)
    assert s.bright_cold_fraction == 0.5 and s.cloud_pixels == 32


def test_s5_s3_of_cloud_against_snow() -> None:
    masks = np.array([[[1, 1, 0, 0]]], np.uint8)
    snow = np.array([[[0, 0, 1, 1]]], np.uint8)
    comp = bands(np.array([[[0.2, 0.6, 0.8, 0.8]]]), s5=np.array([[[0.2, 0.3, 0.08, 0.08]]]))
    surf = bands(np.array([[[0.1, 0.1, 0.8, 0.6]]]), s5=np.array([[[0.05, 0.05, 0.08, 0.09]]]))
    s = spectral(comp, surf, masks, snow)
    assert s.s5_s3_cloud == pytest.approx(0.5 / 0.8)  # Σ S5 / Σ S3, not the mean of 1.0 and 0.5
    assert s.s5_s3_snow == pytest.approx(0.17 / 1.4)
    assert s.s5_s3_cloud_minus_snow == pytest.approx(0.5 / 0.8 - 0.17 / 1.4)
    assert s.s5_s3_cloud_over_snow == pytest.approx((0.5 / 0.8) / (0.17 / 1.4))
    assert (s.s5_s3_cloud_pixels, s.s5_s3_snow_pixels) == (2, 2)

    without = spectral(comp, surf, masks)
    assert math.isnan(without.s5_s3_snow) and without.s5_s3_snow_pixels == 0
    assert math.isnan(without.s5_s3_cloud_minus_snow) and without.s5_s3_cloud == s.s5_s3_cloud


def test_nan_pixels_are_left_out_of_spectral_figures() -> None:
    masks = np.ones((1, 1, 3), bool)
    comp = bands(np.array([[[0.6, np.nan, 0.6]]]), s8=250.0)
    comp[0, S8, 0, 2] = np.nan
    s = spectral(comp, bands(np.full((1, 1, 3), 0.2), s8=290.0), masks)
    assert (s.bright_cold_fraction, s.cloud_pixels, s.s5_s3_cloud_pixels) == (1.0, 1, 2)


# --------------------------------------------------------------------------- empty / degenerate


def _counts_zero_where_nan(f: RealismFigures) -> None:
    pairs = [("texture_slope", "texture_windows"), ("texture_cv", "texture_tiles"),
             ("nyquist_ratio", "texture_windows"), ("edge_nyquist_ratio", "edge_windows"),
             ("edge_opacity_ratio", "edge_tiles"), ("bright_cold_fraction", "cloud_pixels"),
             ("s5_s3_cloud", "s5_s3_cloud_pixels"), ("s5_s3_snow", "s5_s3_snow_pixels")]
    for value, count in pairs:
        if getattr(f, count) == 0:
            assert math.isnan(getattr(f, value)), value


def test_no_cloud_gives_nan_and_zero_counts(surface: np.ndarray) -> None:
    f = realism_figures(bands(surface), bands(surface), np.zeros(surface.shape, bool))
    for name in ("texture_slope", "texture_cv", "nyquist_ratio", "half_nyquist_ratio", "edge_nyquist_ratio",
                 "edge_opacity_ratio", "bright_cold_fraction", "s5_s3_cloud", "s5_s3_snow",
                 "detector_iou"):
        assert math.isnan(getattr(f, name)), name
    assert (f.texture_windows, f.edge_windows, f.edge_tiles, f.cloud_pixels) == (0, 0, 0, 0)
    _counts_zero_where_nan(f)


@pytest.mark.parametrize("case", ["empty_set", "small_tiles", "small_clouds", "all_cloud", "all_nan"])
def test_degenerate_sets_never_raise(case: str) -> None:
    rng = np.random.default_rng(8)
    size = 32 if case == "small_tiles" else 96
    comp = rng.uniform(0.4, 0.8, (3, size, size)).astype(np.float32)
    surf = np.full_like(comp, 0.1)
    masks = np.zeros(comp.shape, bool)
    masks[:, 8:24, 8:24] = True
    if case == "empty_set":
        comp, surf, masks = comp[:0], surf[:0], masks[:0]
    if case == "all_cloud":
        masks[:] = True
    if case == "all_nan":
        comp[:] = np.nan
    f = realism_figures(bands(comp), bands(surf), masks)
    _counts_zero_where_nan(f)
    if case in ("empty_set", "small_tiles", "small_clouds", "all_nan"):
        assert math.isnan(f.texture_slope) and f.texture_windows == 0
    if case == "small_clouds":  # no room for a window, but edges and colours are measured
        assert f.edge_tiles == 3 and f.edge_opacity_ratio > 0 and f.bright_cold_fraction == 0.0
    if case == "all_cloud":  # the tile border is not a cloud edge: no ring, no edge figures
        assert f.texture_windows == 12 and f.edge_ring_pixels == 0 and math.isnan(f.edge_opacity_ratio)
    if case == "all_nan":
        assert f.cloud_pixels == 0 and f.edge_windows == 0


def test_flat_plate_has_no_texture_power() -> None:
    comp = np.full((2, 128, 128), 0.7, np.float32)
    f = texture(bands(comp), bands(np.zeros_like(comp)), np.ones(comp.shape, bool))
    assert f.windows == 18 and math.isnan(f.slope) and f.cv == 0.0


# --------------------------------------------------------------------------- false colour


def test_false_colour_reads_like_the_bands_it_was_made_from(surface: np.ndarray) -> None:
    rng = np.random.default_rng(9)
    masks = blobs(rng, 6, cover=0.8, smooth=16)
    depth = np.stack([ndimage.distance_transform_cdt(m, metric="chessboard") for m in masks])
    alpha = np.clip(0.3 + depth / 8.0, 0, 1).astype(np.float32)
    comp = bands(surface * (1 - alpha) + fractal(rng, 6, 3.0, 0.65, 0.06) * alpha)
    surf = bands(surface)
    fb = realism_figures(comp, surf, masks)
    ff = realism_figures(to_false_colour(comp), to_false_colour(surf), masks)
    assert ff.source == "false_colour" and fb.source == "bands"
    assert fb.texture_windows > 20 and ff.texture_windows == fb.texture_windows
    assert fb.texture_slope == pytest.approx(-3.0, abs=0.2)
    assert ff.texture_slope == pytest.approx(fb.texture_slope, abs=0.1)  # 8-bit steps add a little white noise
    assert ff.texture_cv == pytest.approx(fb.texture_cv, abs=1e-3)
    assert fb.edge_opacity_ratio == pytest.approx(0.43, abs=0.01)  # α 0.425 on the ring, 1 in the core
    assert ff.edge_opacity_ratio == pytest.approx(fb.edge_opacity_ratio, abs=1e-3)
    assert ff.edge_windows == fb.edge_windows
    assert math.isnan(ff.bright_cold_fraction) and ff.cloud_pixels == 0  # no S8 in false colour
    assert not math.isnan(fb.bright_cold_fraction)


def test_detector_figures_come_from_quality(surface: np.ndarray) -> None:
    masks = blobs(np.random.default_rng(10), 6)
    comp = bands(np.where(masks, np.float32(0.7), surface))
    rgb_comp, rgb_surf = to_false_colour(comp), to_false_colour(bands(surface))
    from_rgb = realism_figures(rgb_comp, rgb_surf, masks)
    from_bands = realism_figures(comp, bands(surface), masks, false_colour=(rgb_comp, rgb_surf))
    assert from_rgb.detector_iou == detector_iou(rgb_comp, masks) > 0.9
    assert from_rgb.detector_iou_per_tile == detector_iou(rgb_comp, masks, per_tile=True)
    change = change_figures(brightness(rgb_comp) - brightness(rgb_surf), masks.astype(bool))
    assert from_rgb.brightness_inside == change.inside > 0
    assert from_rgb.brightness_outside == change.outside == 0.0
    for name in ("detector_iou", "detector_iou_per_tile", "brightness_inside", "brightness_outside"):
        assert getattr(from_bands, name) == getattr(from_rgb, name)
    assert math.isnan(realism_figures(comp, bands(surface), masks).detector_iou)  # bands alone: no false colour


def test_shadows_are_not_counted_as_changed_clear_pixels(surface: np.ndarray) -> None:
    masks = np.zeros(surface.shape, bool)
    masks[:, 40:120, 40:120] = True
    shadows = np.zeros_like(masks)
    shadows[:, 130:200, 60:140] = True
    comp = np.where(masks, np.float32(0.7), surface)
    comp = np.where(shadows, comp * 0.5, comp)
    rgb_comp, rgb_surf = to_false_colour(bands(comp)), to_false_colour(bands(surface))
    plain = realism_figures(rgb_comp, rgb_surf, masks)
    shaded = realism_figures(rgb_comp, rgb_surf, masks, shadows=shadows)
    assert plain.brightness_outside < 0
    assert shaded.brightness_outside == 0.0 and shaded.brightness_outside_abs == 0.0
    assert shaded.brightness_inside == plain.brightness_inside


# --------------------------------------------------------------------------- API


def test_as_dict_is_plain_and_figures_are_frozen_and_deterministic(surface: np.ndarray) -> None:
    masks = blobs(np.random.default_rng(12), 6)
    comp = bands(np.where(masks, np.float32(0.7), surface), s8=250.0)
    f = realism_figures(comp, bands(surface, s8=290.0), masks)
    d = f.as_dict()
    assert list(d) == [field.name for field in dataclasses.fields(RealismFigures)]
    assert d["s5_s3_snow"] is None and math.isnan(f.s5_s3_snow)
    assert d["bright_cold_fraction"] == 1.0 and d["source"] == "bands"
    assert all(v is None or isinstance(v, (str, int, float)) for v in d.values())
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.texture_slope = 0.0  # type: ignore[misc]
    assert realism_figures(comp, bands(surface, s8=290.0), masks).as_dict() == d


def test_bad_inputs_are_clear_errors(surface: np.ndarray) -> None:
    masks = np.zeros(surface.shape, bool)
    b = bands(surface)
    rgb = to_false_colour(b)
    with pytest.raises(CloudGANError, match="expected float bands"):
        realism_figures(rgb.astype(np.float32), rgb.astype(np.float32), masks)  # float RGB
    with pytest.raises(CloudGANError, match="expected float bands"):
        realism_figures(b[:, :8], b[:, :8], masks)  # 8 bands
    with pytest.raises(CloudGANError, match="do not pair up"):
        realism_figures(b, rgb, masks)
    with pytest.raises(CloudGANError, match="masks"):
        realism_figures(b, b, masks[:, :10])
    with pytest.raises(CloudGANError, match="0 .clear. or 1"):
        realism_figures(b, b, np.full(masks.shape, 255, np.uint8))
    with pytest.raises(CloudGANError, match="snow masks"):
        realism_figures(b, b, masks, snow=masks[:2])
    with pytest.raises(CloudGANError, match="give them once"):
        realism_figures(rgb, rgb, masks, false_colour=(rgb, rgb))
    with pytest.raises(CloudGANError, match="false_colour"):
        realism_figures(b, b, masks, false_colour=(b, b))
    with pytest.raises(CloudGANError, match="unknown band"):
        band_index("S10")
