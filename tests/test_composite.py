"""Surface assignment, opacity, cloud colour and the composite itself."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from cloudgan_core.composite import (
    assign_surfaces,
    brightness,
    cloud_colour,
    cloud_opacity,
    composite,
    composite_stats,
)
from cloudgan_core.errors import CloudGANError
from cloudgan_core.settings import SettingError


def _tiles(seed: int = 0, n: int = 12, size: int = 32):
    rng = np.random.default_rng(seed)
    surface = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    clouds = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    masks = (rng.random((n, size, size)) < 0.4).astype(np.uint8)
    return surface, clouds, masks


# --------------------------------------------------------------------------- assign_surfaces


def test_assignment_is_seeded_and_deterministic() -> None:
    clouds = ["A"] * 7 + ["B"] * 7
    pool = ["A", "B", "C", "A", "B", "C"]
    first = assign_surfaces(clouds, pool, seed=3)
    assert first.dtype == np.int64 and first.shape == (14,)
    assert np.array_equal(first, assign_surfaces(clouds, pool, seed=3))
    others = {tuple(assign_surfaces(clouds, pool, seed=s)) for s in range(6)}
    assert len(others) > 1


@pytest.mark.parametrize("prefer", [True, False])
def test_no_surface_reused_while_unused_remain(prefer: bool) -> None:
    n_pool, n_clouds = 5, 23
    pool = [f"P{k % 2}" for k in range(n_pool)]
    clouds = [f"P{k % 3}" for k in range(n_clouds)]
    got = assign_surfaces(clouds, pool, seed=11, prefer_other_product=prefer)
    for start in range(0, n_clouds, n_pool):  # every deal of the deck uses each surface once
        block = got[start : start + n_pool].tolist()
        assert len(set(block)) == len(block)
    uses = Counter(got.tolist())
    assert set(uses) == set(range(n_pool))
    assert max(uses.values()) - min(uses.values()) <= 1


def test_prefers_another_product_when_one_is_unused() -> None:
    pool = ["A", "A", "A", "B", "B", "C"]
    clouds = ["A", "A", "B", "A", "A", "A", "C", "B", "A", "A", "A", "A"]
    got = assign_surfaces(clouds, pool, seed=5)
    unused: set[int] = set()
    for k, (cloud_product, pick) in enumerate(zip(clouds, got.tolist(), strict=True)):
        if not unused:
            unused = set(range(len(pool)))
        assert pick in unused, f"cloud {k} reused surface {pick} while others were unused"
        if any(pool[u] != cloud_product for u in unused):
            assert pool[pick] != cloud_product, f"cloud {k} got its own product's surface"
        unused.discard(pick)


def test_same_product_used_when_nothing_else_left() -> None:
    got = assign_surfaces(["A", "A", "A"], ["A", "A"], seed=0)
    assert sorted(got[:2].tolist()) == [0, 1]


def test_prefer_off_can_pick_own_product() -> None:
    pool = ["A"] * 4 + ["B"] * 4
    own = [
        sum(
            pool[i] == "A"
            for i in assign_surfaces(["A"] * 4, pool, seed=s, prefer_other_product=False)
        )
        for s in range(10)
    ]
    assert max(own) > 0  # plain seeded spread, no product preference
    pref = [
        sum(pool[i] == "A" for i in assign_surfaces(["A"] * 4, pool, seed=s)) for s in range(10)
    ]
    assert max(pref) == 0


def test_empty_pool_is_an_error_and_no_clouds_is_fine() -> None:
    with pytest.raises(CloudGANError, match="surface pool is empty"):
        assign_surfaces(["A"], [], seed=0)
    assert assign_surfaces([], [], seed=0).shape == (0,)


# --------------------------------------------------------------------------- opacity and colour


def test_opacity_formula() -> None:
    clouds = np.zeros((1, 2, 3, 3), np.uint8)
    clouds[0, 0, 0] = 255
    clouds[0, 0, 1] = 0
    clouds[0, 0, 2] = (51, 51, 51)  # b = 0.2
    clouds[0, 1, :] = 255  # bright but clear
    masks = np.array([[[1, 1, 1], [0, 0, 0]]], np.uint8)
    a = cloud_opacity(clouds, masks)
    assert a.dtype == np.float32 and a.shape == (1, 2, 3)
    assert a[0, 0, 0] == pytest.approx(1.0)
    assert a[0, 0, 1] == pytest.approx(0.35)
    assert a[0, 0, 2] == pytest.approx(0.35 + 0.65 * 0.2)
    assert (a[0, 1] == 0).all()
    g = cloud_opacity(clouds, masks, min_opacity=0.2, max_opacity=0.9, gamma=2.0)
    assert g[0, 0, 2] == pytest.approx(0.2 + 0.7 * 0.04, rel=1e-5)
    assert g[0, 0, 0] == pytest.approx(0.9)


def test_opacity_grows_with_brightness() -> None:
    levels = np.arange(0, 256, 15, dtype=np.uint8)
    clouds = np.repeat(levels[None, None, :, None], 3, axis=-1)
    a = cloud_opacity(clouds, np.ones((1, 1, levels.size), np.uint8))[0, 0]
    assert np.all(np.diff(a) > 0)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(min_opacity=-0.1),
        dict(min_opacity=0.8, max_opacity=0.5),
        dict(max_opacity=1.2),
        dict(gamma=0.0),
    ],
)
def test_opacity_rejects_bad_settings(kwargs) -> None:
    s, c, m = _tiles(n=1, size=4)
    with pytest.raises(SettingError, match="min_opacity|max_opacity|gamma"):
        cloud_opacity(c, m, **kwargs)


def test_cloud_colour_whitens() -> None:
    clouds = np.zeros((1, 1, 3, 3), np.uint8)
    clouds[0, 0, 1] = 255
    clouds[0, 0, 2] = (100, 0, 200)
    masks = np.array([[[1, 1, 0]]], np.uint8)
    col = cloud_colour(clouds, masks)
    assert col[0, 0, 0].tolist() == [127.5] * 3
    assert col[0, 0, 1].tolist() == [255.0] * 3
    assert col[0, 0, 2].tolist() == [0.0] * 3  # outside the mask: unused, zero
    assert cloud_colour(clouds, masks, whiten=0.0)[0, 0, 0].tolist() == [0.0] * 3
    with pytest.raises(CloudGANError):
        cloud_colour(clouds, masks, whiten=1.5)


# --------------------------------------------------------------------------- composite


def test_outside_mask_is_byte_identical() -> None:
    surface, clouds, masks = _tiles()
    out = composite(surface, clouds, masks)
    assert out.dtype == np.uint8 and out.shape == surface.shape
    clear = masks == 0
    assert np.array_equal(out[clear], surface[clear])


def test_inside_mask_follows_formula() -> None:
    surface, clouds, masks = _tiles(seed=1)
    out = composite(surface, clouds, masks, min_opacity=0.4, gamma=1.5, whiten=0.3)
    s = surface.astype(np.float64)
    c = clouds.astype(np.float64)
    alpha = 0.4 + 0.6 * (c.mean(axis=-1) / 255.0) ** 1.5
    colour = 0.3 * 255.0 + 0.7 * c
    expected = np.rint(s * (1 - alpha[..., None]) + colour * alpha[..., None])
    inside = masks == 1
    diff = np.abs(out[inside].astype(np.float64) - expected[inside])
    assert diff.max() <= 1.0  # float32 vs float64 rounding at .5 only
    assert diff.mean() < 0.01


def test_every_masked_pixel_changes_on_dark_surface() -> None:
    surface = np.full((3, 16, 16, 3), 20, np.uint8)
    clouds = np.zeros((3, 16, 16, 3), np.uint8)  # even a black generated cloud
    masks = np.zeros((3, 16, 16), np.uint8)
    masks[:, 4:12, 4:12] = 1
    out = composite(surface, clouds, masks)
    assert np.all(out[masks == 1] > surface[masks == 1] + 20)
    assert np.array_equal(out[masks == 0], surface[masks == 0])


def test_composite_is_deterministic() -> None:
    surface, clouds, masks = _tiles(seed=2)
    assert (
        composite(surface, clouds, masks).tobytes() == composite(surface, clouds, masks).tobytes()
    )


def test_original_blend_changes_clear_pixels_and_stretches() -> None:
    surface, clouds, masks = _tiles(seed=3)
    surface = (surface // 2 + 40).astype(np.uint8)  # 40..167: needs stretching
    out = composite(surface, clouds, masks, blend="original")
    assert out.dtype == np.uint8
    for i in range(out.shape[0]):
        assert out[i].min() == 0 and out[i].max() == 255
        mean = (surface[i].astype(np.float64) + clouds[i]) / 2
        stretched = (mean - mean.min()) / (mean.max() - mean.min()) * 255
        assert np.abs(out[i] - stretched).max() <= 2.5
    clear = masks == 0
    assert not np.array_equal(out[clear], surface[clear])


def test_single_tile_is_accepted() -> None:
    surface, clouds, masks = _tiles(n=1, size=8)
    out = composite(surface[0], clouds[0], masks[0])
    assert np.array_equal(out, composite(surface, clouds, masks))


def test_bad_inputs_are_named() -> None:
    surface, clouds, masks = _tiles(n=2, size=8)
    with pytest.raises(CloudGANError, match="0/255"):
        composite(surface, clouds, masks * 255)
    with pytest.raises(CloudGANError, match="differ"):
        composite(surface, clouds[:1], masks)
    with pytest.raises(CloudGANError, match="masks"):
        composite(surface, clouds, masks[:, :4])
    with pytest.raises(CloudGANError, match="blend"):
        composite(surface, clouds, masks, blend="screen")  # type: ignore[arg-type]
    with pytest.raises(CloudGANError, match="uint8"):
        composite(surface.astype(np.float32), clouds, masks)


# --------------------------------------------------------------------------- brightness and figures


def test_brightness_is_the_exact_channel_mean() -> None:
    surface, _, _ = _tiles(n=3, size=8)
    exact = surface.astype(np.float64).sum(axis=-1) / 3.0
    b = brightness(surface)
    assert b.dtype == np.float32 and b.shape == (3, 8, 8)
    np.testing.assert_array_equal(b, exact.astype(np.float32))
    np.testing.assert_array_equal(brightness(surface[0]), b[0])  # one (H, W, 3) tile
    np.testing.assert_allclose(brightness(surface.astype(np.float32)), exact, rtol=1e-6)
    with pytest.raises(CloudGANError, match="3 channels"):
        brightness(surface[..., :2])


def test_composite_stats_follow_the_opacity_and_the_change() -> None:
    surface, clouds, masks = _tiles(n=4, size=16)
    masks[2] = 0  # a tile without cloud
    images = composite(surface, clouds, masks, min_opacity=0.4)
    stats = composite_stats(images, surface, clouds, masks, min_opacity=0.4)
    alpha = cloud_opacity(clouds, masks, min_opacity=0.4)
    cloudy = masks.astype(bool)
    change = brightness(images) - brightness(surface)
    assert stats.mean_opacity == pytest.approx(alpha[cloudy].mean())
    assert stats.mean_change_inside == pytest.approx(change[cloudy].mean())
    assert stats.mean_brightness == pytest.approx(brightness(images).mean())
    assert stats.tile_opacity[2] == 0.0 and stats.tile_change_inside[2] == 0.0
    assert stats.tile_opacity[0] == pytest.approx(alpha[0][cloudy[0]].mean())
    original = composite_stats(composite(surface, clouds, masks, blend="original"), surface, clouds, masks,
                               blend="original")
    assert original.mean_opacity == 0.5
    empty = composite_stats(surface[:0], surface[:0], clouds[:0], masks[:0])
    assert empty.mean_opacity == empty.mean_brightness == 0.0 and empty.tile_opacity.shape == (0,)
