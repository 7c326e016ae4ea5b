"""Plain checks: a good set passes each, a deliberately broken set fails each."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cloudgan_core.composite import original_blend
from cloudgan_core.cover import CoverRange
from cloudgan_core.stages import training_set
from cloudgan_core.validation import (
    CheckOutcome,
    check_aligned,
    check_cover_range,
    check_inside_mask_changed,
    check_min_pairs,
    check_outside_mask_unchanged,
    check_tiles_sane,
)
from tests.stage_helpers import make_pairs, provenance


@pytest.fixture()
def good_set():
    rng = np.random.default_rng(0)
    n, size = 12, 32
    surface = rng.integers(10, 140, (n, size, size, 3), dtype=np.uint8)
    clouds = rng.integers(60, 256, (n, size, size, 3), dtype=np.uint8)
    masks = np.zeros((n, size, size), np.uint8)
    for k in range(n):  # a square blob per tile, growing cover
        r = 4 + k
        masks[k, 2 : 2 + r, 3 : 3 + r] = 1
    images = np.where(masks[..., None] == 1, 255 - surface // 4, surface)  # mask-exact, every cloud pixel changed
    return images, surface, clouds, masks


def _json_ok(outcome: CheckOutcome) -> None:
    assert isinstance(outcome.passed, bool)
    assert outcome.description
    json.dumps(outcome.metadata)  # plain types only


# --------------------------------------------------------------------------- aligned


def test_aligned_good(good_set) -> None:
    images, _, _, masks = good_set
    out = check_aligned(images, masks, index=range(1, 13), mask_index=list(range(1, 13)))
    assert out.passed, out.description
    assert out.metadata["tile_shape"] == [32, 32]
    _json_ok(out)


def test_aligned_broken(good_set) -> None:
    images, _, _, masks = good_set
    assert not check_aligned(images, masks[:-1]).passed
    assert not check_aligned(images[:, :, :16], masks).passed
    ragged = list(masks)
    ragged[5] = ragged[5][:, :31]
    out = check_aligned(list(images), ragged)
    assert not out.passed and out.metadata["mismatched_tiles"] == [5]
    assert not check_aligned(images, masks, index=range(1, 12)).passed
    dup = list(range(1, 13))
    dup[3] = 2
    assert not check_aligned(images, masks, index=dup).passed
    swapped = list(range(1, 13))
    swapped[0], swapped[1] = swapped[1], swapped[0]
    out = check_aligned(images, masks, index=range(1, 13), mask_index=swapped)
    assert not out.passed and "another order" in out.description
    _json_ok(out)


def test_aligned_on_written_set(tmp_path: Path) -> None:
    pairs = make_pairs(n=12)
    training_set.write(tmp_path, pairs, provenance=provenance(0))
    data = training_set.read(tmp_path)
    img, msk = data.arrays("images"), data.arrays("masks")
    idx = data.numbers()
    out = check_aligned(img, msk, index=idx["images"], mask_index=idx["masks"])
    assert out.passed, out.description
    surf_back = data.arrays("surface")
    assert check_outside_mask_unchanged(img, surf_back, msk, data.arrays("shadows")).passed
    (tmp_path / "training_set" / "masks" / "00007.png").unlink()  # broken set: one mask missing
    idx = data.numbers()
    out = check_aligned(img, msk, index=idx["images"], mask_index=idx["masks"])
    assert not out.passed and out.metadata["only_images"] == [7]


# --------------------------------------------------------------------------- outside unchanged


def test_outside_unchanged_good(good_set) -> None:
    images, surface, _, masks = good_set
    out = check_outside_mask_unchanged(images, surface, masks)
    assert out.passed, out.description
    assert out.metadata["differing_pixels"] == 0
    assert out.metadata["clear_pixels"] == int((masks == 0).sum())
    _json_ok(out)


def test_outside_unchanged_one_pixel_breaks_it(good_set) -> None:
    images, surface, _, masks = good_set
    broken = images.copy()
    ys, xs = np.nonzero(masks[4] == 0)
    broken[4, ys[0], xs[0], 1] ^= 1  # one channel of one clear pixel, off by one
    out = check_outside_mask_unchanged(broken, surface, masks)
    assert not out.passed
    assert out.metadata["differing_pixels"] == 1 and out.metadata["affected_tiles"] == [4]
    _json_ok(out)


def test_outside_unchanged_fails_on_original_blend(good_set) -> None:
    _, surface, clouds, masks = good_set
    original = original_blend(surface, clouds)
    out = check_outside_mask_unchanged(original, surface, masks)
    assert not out.passed and out.metadata["differing_pixels"] > 1000


def test_outside_unchanged_shape_mismatch_fails(good_set) -> None:
    images, surface, _, masks = good_set
    assert not check_outside_mask_unchanged(images[:-1], surface, masks).passed
    assert not check_outside_mask_unchanged(images, surface, masks[:, :8]).passed
    out = check_outside_mask_unchanged(images, surface, masks, masks[:, :8])
    assert not out.passed and "shadow masks" in out.description


def test_outside_unchanged_leaves_the_shadow_out(good_set) -> None:
    images, surface, _, masks = good_set
    shadows = np.zeros_like(masks)
    shadows[:, -4:, :] = (masks[:, -4:, :] == 0)  # a band of shadow on clear pixels
    darker = images.copy()
    darker[shadows == 1] //= 2
    assert not check_outside_mask_unchanged(darker, surface, masks).passed  # the cloud mask alone: differs
    out = check_outside_mask_unchanged(darker, surface, masks, shadows)
    assert out.passed and out.metadata["clear_pixels"] == int(((masks == 0) & (shadows == 0)).sum())
    darker[0, 0, 0, 0] ^= 1  # ... but a clear pixel outside both is still caught
    assert (masks[0, 0, 0], shadows[0, 0, 0]) == (0, 0)
    assert not check_outside_mask_unchanged(darker, surface, masks, shadows).passed


# --------------------------------------------------------------------------- inside changed


def test_inside_changed_good(good_set) -> None:
    images, surface, _, masks = good_set
    out = check_inside_mask_changed(images, surface, masks, min_share=0.95)
    assert out.passed, out.description
    assert out.metadata["changed_share"] > 0.95
    _json_ok(out)


def test_inside_changed_broken(good_set) -> None:
    images, surface, _, masks = good_set
    out = check_inside_mask_changed(surface.copy(), surface, masks)  # no cloud drawn at all
    assert not out.passed and out.metadata["changed_share"] == 0.0
    half = images.copy()
    half[6:] = surface[6:]  # half the tiles lost their clouds
    out = check_inside_mask_changed(half, surface, masks, min_share=0.95)
    assert not out.passed and 0.0 < out.metadata["changed_share"] < 0.95
    assert check_inside_mask_changed(half, surface, masks, min_share=0.0).passed


def test_inside_changed_without_clouds_passes() -> None:
    surface = np.full((2, 4, 4, 3), 9, np.uint8)
    out = check_inside_mask_changed(surface, surface, np.zeros((2, 4, 4), np.uint8))
    assert out.passed and out.metadata["cloudy_pixels"] == 0


# --------------------------------------------------------------------------- cloud fraction range


def test_cover_range() -> None:
    good = check_cover_range([10.5, 50.0, 90.0], CoverRange(10, 90))
    assert good.passed and good.metadata["min"] == 10.5 and good.metadata["max"] == 90.0
    assert good.description == "all 3 covers within (10, 90] %"
    _json_ok(good)
    bad = check_cover_range([10.5, 95.0, 50.0, 5.0, 10.0], CoverRange(10, 90))
    assert not bad.passed and bad.metadata["outside_tiles"] == [1, 3, 4]  # (10, 90]: 10 itself is outside
    assert bad.metadata["n_outside"] == 3 and "first: tile 1 with 95 %" in bad.description
    _json_ok(bad)
    assert check_cover_range([0.0, 100.0], CoverRange(0, 100)).passed  # from 0 the range holds 0
    assert not check_cover_range([20.0, float("nan")], CoverRange(0, 100)).passed


# --------------------------------------------------------------------------- tiles sane


def test_tiles_sane_good(good_set) -> None:
    out = check_tiles_sane(good_set[0])
    assert out.passed and out.metadata["n_tiles"] == 12
    _json_ok(out)


def test_tiles_sane_broken(good_set) -> None:
    images = good_set[0].copy()
    assert not check_tiles_sane(images[:0]).passed
    assert not check_tiles_sane([]).passed
    images[3] = 0
    out = check_tiles_sane(images)
    assert not out.passed and out.metadata["bad_tiles"] == [3] and "all-black" in out.description
    floats = good_set[0].astype(np.float32)
    floats[2, 0, 0, 0] = np.nan
    out = check_tiles_sane(floats)
    assert not out.passed and out.metadata["nan_tiles"] == 1
    _json_ok(out)


# --------------------------------------------------------------------------- min pairs


def test_min_pairs() -> None:
    assert check_min_pairs(12, 10).passed
    assert check_min_pairs(10, 10).passed
    out = check_min_pairs(3, 10)
    assert not out.passed and out.metadata == {"pairs": 3, "minimum": 10}
