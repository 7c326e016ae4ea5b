"""Tiling (ragged remainder skipped, per-tile fractions), sorting into cover bins, surface
candidates and GAN inputs, and the on-disk tile format (``.npy`` arrays + ``index.csv``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cloudgan_core.cover import CoverRange
from cloudgan_core.errors import ProductError
from cloudgan_core.slstr.flags import PIXEL_FLAG_BITS
from cloudgan_core.stages import false_color, masks, products, sorted_tiles
from cloudgan_core.stages import tiles as tiles_stage
from cloudgan_core.stages.tiles import read_group, write_group
from cloudgan_core.tiles import (ANGLE_COLUMNS, INDEX_COLUMNS, Tiles, bin_counts, check_tile_size, cover_bin,
                                 slice_tiles, sort_tiles)

B = PIXEL_FLAG_BITS
CLEAR_DAY = B["valid"] | B["day"] | B["sza_ok"] | B["ocean"]


def _random_scene(rows: int, cols: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    flags = np.zeros((rows, cols), np.uint16)
    for name in ("cloud", "valid", "day", "land", "snow"):
        flags |= (rng.random((rows, cols)) < rng.uniform(0.1, 0.9)).astype(np.uint16) * np.uint16(B[name])
    image = rng.integers(0, 256, (rows, cols, 3), dtype=np.uint8)
    return image, flags


def _scene_with_cover(percents: list[float], size: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """One row of tiles, tile k fully valid daytime with ``percents[k]`` % cloud pixels."""
    flags = np.full((size, size * len(percents)), CLEAR_DAY, np.uint16)
    for k, pct in enumerate(percents):
        n = int(round(pct / 100 * size * size))
        block = flags[:, k * size:(k + 1) * size].copy().reshape(-1)
        block[:n] |= np.uint16(B["cloud"])
        flags[:, k * size:(k + 1) * size] = block.reshape(size, size)
    return np.zeros(flags.shape + (3,), np.uint8), flags


def test_tile_size_must_be_a_multiple_of_4() -> None:
    image, flags = _random_scene(64, 64)
    for bad in (0, -4, 6, 30, 254):
        with pytest.raises(ValueError, match="multiple of 4"):
            slice_tiles(image, flags, "p", bad)
        with pytest.raises(ValueError, match="multiple of 4"):
            check_tile_size(bad)
    assert check_tile_size(8) == 8


def test_ragged_remainder_is_skipped() -> None:
    image, flags = _random_scene(250, 530)
    tiles = slice_tiles(image, flags, "prod", 100)
    assert len(tiles) == 2 * 5
    assert tiles.images.shape == (10, 100, 100, 3) and tiles.masks.shape == (10, 100, 100)
    assert tiles.images.dtype == np.uint8 and tiles.masks.dtype == np.uint8
    positions = [(r["row"], r["col"]) for r in tiles.index]
    assert positions == [(r, c) for r in (0, 100) for c in range(0, 500, 100)]
    for k, (r, c) in enumerate(positions):
        np.testing.assert_array_equal(tiles.images[k], image[r:r + 100, c:c + 100])
        np.testing.assert_array_equal(tiles.masks[k], (flags[r:r + 100, c:c + 100] & B["cloud"]) != 0)
    with pytest.raises(ValueError, match=r"tile_size 100 is larger than the scene 99 x 530 of prod"):
        slice_tiles(image[:99], flags[:99], "prod", 100)  # no tile fits: an error, not an empty result


def test_fractions_equal_a_direct_computation() -> None:
    image, flags = _random_scene(200, 264, seed=4)
    tiles = slice_tiles(image, flags, "S3A_test", 64)
    assert len(tiles) == 3 * 4
    for row in tiles.index:
        r, c = row["row"], row["col"]
        block = flags[r:r + 64, c:c + 64]
        assert row["product"] == "S3A_test" and row["size"] == 64
        for name in ("cloud", "valid", "day", "land", "snow"):
            direct = np.count_nonzero(block & B[name]) / block.size
            assert row[f"{name}_fraction"] == pytest.approx(direct, abs=1e-6), name
    fractions = [r["cloud_fraction"] for r in tiles.index]
    assert len(set(fractions)) > 1


def test_invalid_image_pixels_lower_the_valid_fraction() -> None:
    """Pixels without a finite reflectance (the false-colour stage's valid.npy) are not valid,
    whatever their flags say."""
    image, flags = _scene_with_cover([50.0, 50.0, 50.0])
    visible = np.ones(flags.shape, bool)
    visible[:, 100:200] = False  # tile 1: radiance fill
    visible[:25, 200:300] = False  # tile 2: a quarter
    tiles = sort_tiles(slice_tiles(image, flags, "p", 100, valid=visible))
    assert [r["valid_fraction"] for r in tiles.index] == [1.0, 0.0, 0.75]
    assert [r["gan_input"] for r in tiles.index] == [True, False, False]
    assert [r["cloud_fraction"] for r in tiles.index] == [0.5, 0.5, 0.5]  # the mask itself is unchanged
    with pytest.raises(ValueError, match="differ in size"):
        slice_tiles(image, flags, "p", 100, valid=visible[:50])


def test_image_and_flags_must_match() -> None:
    image, flags = _random_scene(64, 64)
    with pytest.raises(ValueError, match="differ in size"):
        slice_tiles(image[:32], flags, "p", 16)


@pytest.mark.parametrize(("pct", "label"), [(0, "0-10"), (10, "0-10"), (10.01, "10-95"), (95, "10-95"),
                                            (95.01, "95-100"), (100, "95-100")])
def test_cover_bin_edges(pct: float, label: str) -> None:
    assert cover_bin(pct, (0.0, 10.0, 95.0, 100.0)) == label


def test_sort_bins_at_the_edges() -> None:
    percents = [0.0, 10.0, 10.01, 95.0, 100.0]
    image, flags = _scene_with_cover(percents)
    tiles = sort_tiles(slice_tiles(image, flags, "p", 100))
    got = [(r["cloud_fraction"], r["bin"], r["gan_input"], r["surface_candidate"]) for r in tiles.index]
    assert got == [(0.0, "0-10", False, True), (0.1, "0-10", False, False), (0.1001, "10-95", True, False),
                   (0.95, "10-95", True, False), (1.0, "95-100", False, False)]
    assert bin_counts(tiles.index) == {"0-10": 2, "10-95": 2, "95-100": 1}


def test_gan_input_agrees_with_the_bin_for_custom_edges() -> None:
    # 100 * 0.07 == 7.000000000000001 in floating point: the bin and the GAN range must still agree
    image, flags = _scene_with_cover([7.0, 7.01, 50.0])
    tiles = sort_tiles(slice_tiles(image, flags, "p", 100), edges=(0, 7, 50, 100), cover=CoverRange(7, 50))
    assert [r["bin"] for r in tiles.index] == ["0-7", "7-50", "7-50"]
    assert [r["gan_input"] for r in tiles.index] == [False, True, True]


def test_bad_edges_rejected() -> None:
    image, flags = _scene_with_cover([0.0])
    with pytest.raises(ValueError, match="increase"):
        sort_tiles(slice_tiles(image, flags, "p", 100), edges=(0, 50, 50, 100))


def test_surface_candidates_need_valid_day_clear_and_allow_snow() -> None:
    size = 20
    variants = {
        "clear": CLEAR_DAY,
        "one_invalid_pixel": None,
        "no_day": CLEAR_DAY & ~B["day"],
        "one_cloud_pixel": None,
        "snow": CLEAR_DAY | B["snow"],
    }
    flags = np.full((size, size * len(variants)), CLEAR_DAY, np.uint16)
    for k, value in enumerate(variants.values()):
        if value is not None:
            flags[:, k * size:(k + 1) * size] = value
    flags[3, 1 * size + 4] &= ~np.uint16(B["valid"])
    flags[7, 3 * size + 9] |= np.uint16(B["cloud"])
    tiles = sort_tiles(slice_tiles(np.zeros(flags.shape + (3,), np.uint8), flags, "p", size))
    # snow and ice are allowed: clouds over snow are the hard case a cloud-masking model must learn
    assert [r["surface_candidate"] for r in tiles.index] == [True, False, False, False, True]
    assert tiles.index[4]["snow_fraction"] == 1.0
    # a GAN input needs enough valid pixels
    flags = np.full((size, 2 * size), CLEAR_DAY | B["cloud"], np.uint16)
    flags[: size // 2] &= ~np.uint16(B["cloud"])  # 50 % cloud in both tiles
    flags[:, size:] &= ~np.uint16(B["valid"])  # second tile invalid
    tiles = sort_tiles(slice_tiles(np.zeros(flags.shape + (3,), np.uint8), flags, "p", size))
    assert [r["gan_input"] for r in tiles.index] == [True, False]


def test_write_read_round_trip_and_pandas(tmp_path: Path) -> None:
    image, flags = _random_scene(128, 192, seed=9)
    bands = np.random.default_rng(3).random((9, 128, 192), dtype=np.float32)
    angles = {c: np.linspace(10.0, 20.0, 6) + k for k, c in enumerate(ANGLE_COLUMNS)}
    tiles = sort_tiles(slice_tiles(image, flags, "S3A_SL_1_RBT____x", 64, bands=bands, angles=angles))
    write_group(tmp_path / "t", tiles)
    back = read_group(tmp_path / "t", mmap=False)
    np.testing.assert_array_equal(back.images, tiles.images)
    np.testing.assert_array_equal(back.masks, tiles.masks)
    np.testing.assert_array_equal(back.bands[4], bands[:, 64:128, 64:128])  # tile 4: second row, second column
    np.testing.assert_array_equal(back.flags[4], flags[64:128, 64:128])
    assert back.index == tiles.index and back.index[4]["view_zenith"] == 20.0  # 18 + 2
    mm = read_group(tmp_path / "t")
    assert isinstance(mm.images, np.memmap) and np.array_equal(mm.masks, tiles.masks)
    index = pd.read_csv(tmp_path / "t" / "index.csv")
    assert list(index.columns) == list(INDEX_COLUMNS)
    assert len(index) == len(tiles) == 6
    assert index["surface_candidate"].dtype == bool and index["gan_input"].dtype == bool
    assert index["cloud_fraction"].tolist() == [r["cloud_fraction"] for r in tiles.index]
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["bands.npy", "flags.npy", "images.npy",
                                                                  "index.csv", "masks.npy"]
    # take() keeps images, masks, bands, flags and index rows together
    sub = tiles.take([4, 1])
    np.testing.assert_array_equal(sub.images, tiles.images[[4, 1]])
    np.testing.assert_array_equal(sub.bands, tiles.bands[[4, 1]])
    np.testing.assert_array_equal(sub.flags, tiles.flags[[4, 1]])
    assert [r["tile"] for r in sub.index] == [4, 1]


def test_a_group_whose_index_disagrees_with_its_arrays_is_refused(tmp_path: Path) -> None:
    image, flags = _random_scene(128, 192, seed=9)
    tiles = slice_tiles(image, flags, "p", 64)
    write_group(tmp_path / "t", tiles)
    tiles_stage.write_index(tmp_path / "t" / "index.csv", tiles.index[:-1])  # a row lost
    with pytest.raises(ProductError, match=r"holds 6 images, 6 masks and 5 index rows"):
        read_group(tmp_path / "t")


def test_empty_tiles_round_trip(tmp_path: Path) -> None:
    tiles = sort_tiles(Tiles(np.zeros((0, 64, 64, 3), np.uint8), np.zeros((0, 64, 64), np.uint8), []))
    write_group(tmp_path / "e", tiles)
    back = read_group(tmp_path / "e")
    assert len(back) == 0 and back.images.shape == (0, 64, 64, 3)
    assert len(pd.read_csv(tmp_path / "e" / "index.csv")) == 0


def test_tile_stages_on_a_simulated_product(sim_product: Path, sim_truth, tmp_path: Path) -> None:
    key = products.register(tmp_path, sim_product).product
    masks.build(tmp_path, key)
    false_color.build(tmp_path, key)
    visible = np.load(false_color.folder(tmp_path, key) / "valid.npy")
    np.testing.assert_array_equal(visible, ~sim_truth.unfilled)  # daytime scene: only the fill columns
    result = tiles_stage.build(tmp_path, key, tiles_stage.TilesConfig(tile_size=64))
    rows, cols = sim_truth.cloud.shape
    assert result.figures()["tiles"] == (rows // 64) * (cols // 64)  # 240 x 320: ragged bottom rows skipped
    assert result.figures()["index"] == tiles_stage.folder(tmp_path, key) / "index.csv"
    preview = result.preview()
    assert preview.image.ndim == 3 and preview.max_side == 720  # false colour | mask, with the tile grid
    tiles = tiles_stage.read(tmp_path, key)
    assert tiles.index == result.tiles.index and [r["product"] for r in tiles.index] == [key] * len(tiles)
    image = np.load(false_color.folder(tmp_path, key) / "false_color.npy")
    for k, row in enumerate(tiles.index):
        r, c = row["row"], row["col"]
        np.testing.assert_array_equal(tiles.images[k], image[r:r + 64, c:c + 64])
        truth = sim_truth.cloud[r:r + 64, c:c + 64] & ~sim_truth.unfilled[r:r + 64, c:c + 64]
        np.testing.assert_array_equal(tiles.masks[k], truth)
    sorted_result = sorted_tiles.build(tmp_path, key)
    figures = sorted_result.figures()
    index = pd.read_csv(sorted_tiles.folder(tmp_path, key) / "index.csv")
    assert len(index) == len(tiles)
    assert sum(v for k, v in figures.items() if k.startswith("bin_")) == len(tiles)
    stored = sorted_tiles.read(tmp_path, key)
    assert stored.index == sorted_result.data.index and len(stored.index) == len(tiles)
    for group, column in (("surface", "surface_candidate"), ("gan_input", "gan_input")):
        part = getattr(stored, group)
        assert isinstance(part.images, np.memmap) and part.index == read_group(sorted_tiles.folder(tmp_path, key) / group).index
        chosen = index[index[column]]
        assert len(part) == len(chosen) == figures[{"surface": "surface_candidates"}.get(group, "gan_inputs")]
        for k, tile_no in enumerate(chosen["tile"]):
            np.testing.assert_array_equal(part.masks[k], tiles.masks[tile_no])
    assert index["gan_input"].any()  # the default scene has partly cloudy tiles
