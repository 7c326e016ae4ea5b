"""Surface assignment, the rendered composite, the original blend and the composite figures."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from cloudgan_core.clouds import CloudField, Geometry, false_color, render
from cloudgan_core.composite import (
    assign_surfaces,
    brightness,
    composite_stats,
    original_blend,
    render_composites,
    tile_geometry,
)
from cloudgan_core.errors import CloudGANError


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


# --------------------------------------------------------------------------- rendered composites


def _scene(seed: int = 0, n: int = 4, size: int = 32):
    """Surface bands and their false colour, tau fields with round clouds, heights and geometries."""
    rng = np.random.default_rng(seed)
    bands = np.empty((n, 9, size, size), np.float32)
    bands[:, :6] = rng.uniform(0.02, 0.3, (n, 6, size, size))
    bands[:, 6:] = rng.uniform(275.0, 300.0, (n, 3, size, size))
    images = np.stack([false_color(b) for b in bands])
    yy, xx = np.mgrid[:size, :size]
    tau = np.zeros((n, size, size), np.float32)
    for i in range(n):
        inside = (yy - size / 2) ** 2 + (xx - size / 2 - i) ** 2 <= (size / 4 + i) ** 2
        tau[i][inside] = rng.uniform(0.3, 30.0, int(inside.sum()))
    heights = [1.0 + i for i in range(n)]
    geometries = [Geometry(30.0 + 5 * i, 120.0 + 20 * i, 10.0, 100.0) for i in range(n)]
    return bands, images, tau, heights, geometries


def test_rendered_composite_is_exact_outside_cloud_and_shadow() -> None:
    bands, images, tau, heights, geometries = _scene()
    out = render_composites(bands, images, tau, heights, geometries)
    assert out.images.dtype == np.uint8 and out.bands.dtype == np.float32
    assert np.array_equal(out.cloud == 1, tau > 0)
    assert out.shadow.any() and not (out.shadow & out.cloud).any()
    touched = (out.cloud == 1) | (out.shadow == 1)
    assert np.array_equal(out.images[~touched], images[~touched])
    assert np.array_equal(np.moveaxis(out.bands, 1, -1)[~touched], np.moveaxis(bands, 1, -1)[~touched])
    # inside: the false colour of the rendered bands; clouds brighten S3 and cool S8
    assert np.array_equal(out.images[touched], np.stack([false_color(b) for b in out.bands])[touched])
    cloud = out.cloud == 1
    assert (out.bands[:, 2][cloud] > bands[:, 2][cloud]).mean() > 0.95
    assert (out.bands[:, 7][cloud] < bands[:, 7][cloud]).mean() > 0.9  # a surface colder than the top: warmer
    assert (out.opacity[~cloud] == 0).all() and (out.opacity[cloud] > 0).all()
    no_shadow = render_composites(bands, images, tau, heights, geometries, shadows=False)
    assert not no_shadow.shadow.any() and np.array_equal(no_shadow.images[~cloud], images[~cloud])


def test_a_tile_renders_the_same_alone_as_in_any_batch() -> None:
    # the deterministic-bytes guarantee the stage relies on: a tile's composite depends on its own
    # inputs only (not on the other tiles, their order or the batch size), and equals clouds.render
    bands, images, tau, heights, geometries = _scene(seed=2)
    batch = render_composites(bands, images, tau, heights, geometries)
    order = [3, 1, 0, 2]
    shuffled = render_composites(bands[order], images[order], tau[order], [heights[i] for i in order],
                                 [geometries[i] for i in order])
    for j, i in enumerate(order):
        alone = render_composites(bands[i:i + 1], images[i:i + 1], tau[i:i + 1], heights[i:i + 1],
                                  geometries[i:i + 1])
        direct = render(bands[i], CloudField(tau[i], heights[i]), geometries[i])
        for out in (alone, shuffled):
            k = 0 if out is alone else j
            assert out.images[k].tobytes() == batch.images[i].tobytes()
            assert out.bands[k].tobytes() == batch.bands[i].tobytes()
        assert direct.bands.tobytes() == batch.bands[i].tobytes()
        assert np.array_equal(direct.shadow, batch.shadow[i] == 1)


def test_render_inputs_that_do_not_pair_up_are_named() -> None:
    bands, images, tau, heights, geometries = _scene(n=2, size=8)
    with pytest.raises(CloudGANError, match="surface bands"):
        render_composites(bands[:, :3], images, tau, heights, geometries)
    with pytest.raises(CloudGANError, match="do not pair up"):
        render_composites(bands, images, tau[:1], heights, geometries)
    hot = bands.copy()
    hot[1, 7] = 500.0
    with pytest.raises(CloudGANError, match="tile 1: .*brightness temperatures"):
        render_composites(hot, images, tau, heights, geometries)


def test_tile_geometry_reads_the_angles_or_names_what_is_missing() -> None:
    row = {"solar_zenith": "40", "solar_azimuth": 140.0, "view_zenith": 5.0, "view_azimuth": 100.0}
    assert tile_geometry(row, "x.csv row 2") == Geometry(40.0, 140.0, 5.0, 100.0)
    with pytest.raises(CloudGANError, match="x.csv row 2: no view_zenith, view_azimuth.*materialize tiles"):
        tile_geometry({"solar_zenith": 40.0, "solar_azimuth": 1.0, "view_zenith": ""}, "x.csv row 2")
    with pytest.raises(CloudGANError, match="x.csv row 2: solar_zenith must be within"):
        tile_geometry({**row, "solar_zenith": 95.0}, "x.csv row 2")


def test_original_blend_changes_clear_pixels_and_stretches() -> None:
    surface, clouds, masks = _tiles(seed=3)
    surface = (surface // 2 + 40).astype(np.uint8)  # 40..167: needs stretching
    out = original_blend(surface, clouds)
    assert out.dtype == np.uint8
    for i in range(out.shape[0]):
        assert out[i].min() == 0 and out[i].max() == 255
        mean = (surface[i].astype(np.float64) + clouds[i]) / 2
        stretched = (mean - mean.min()) / (mean.max() - mean.min()) * 255
        assert np.abs(out[i] - stretched).max() <= 2.5
    clear = masks == 0
    assert not np.array_equal(out[clear], surface[clear])
    assert np.array_equal(original_blend(surface[0], clouds[0]), out[:1])  # one (H, W, 3) tile
    with pytest.raises(CloudGANError, match="differ in shape"):
        original_blend(surface, clouds[:1])


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


def test_composite_stats_follow_the_opacity_the_change_and_the_shadow() -> None:
    surface, images, _ = _tiles(n=4, size=16)
    rng = np.random.default_rng(9)
    masks = (rng.random((4, 16, 16)) < 0.4).astype(np.uint8)
    masks[2] = 0  # a tile without cloud
    shadows = ((rng.random((4, 16, 16)) < 0.1) & (masks == 0)).astype(np.uint8)
    alpha = np.where(masks == 1, rng.random((4, 16, 16)), 0.0).astype(np.float32)
    stats = composite_stats(images, surface, masks, alpha, shadows)
    cloudy = masks.astype(bool)
    change = brightness(images) - brightness(surface)
    assert stats.mean_opacity == pytest.approx(alpha[cloudy].mean())
    assert stats.mean_change_inside == pytest.approx(change[cloudy].mean())
    assert stats.mean_brightness == pytest.approx(brightness(images).mean())
    assert stats.mean_shadow_fraction == pytest.approx(shadows.mean())
    assert stats.tile_shadow_fraction[1] == pytest.approx(shadows[1].mean())
    assert stats.tile_opacity[2] == 0.0 and stats.tile_change_inside[2] == 0.0
    assert stats.tile_opacity[0] == pytest.approx(alpha[0][cloudy[0]].mean())
    with pytest.raises(CloudGANError, match="opacity"):
        composite_stats(images, surface, masks, alpha[:, :4])
    empty = composite_stats(surface[:0], surface[:0], masks[:0], alpha[:0])
    assert empty.mean_opacity == empty.mean_brightness == 0.0 and empty.tile_opacity.shape == (0,)
