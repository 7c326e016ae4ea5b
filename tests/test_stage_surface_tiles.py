"""The surface_tiles stage called directly, without Dagster: pool, user folder, sizes, read/write."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from cloudgan_core.atomic import MissingInputError
from cloudgan_core.errors import CloudGANError
from cloudgan_core.stages import surface_tiles
from cloudgan_core.stages.sorted_tiles import read as read_sorted
from tests.stage_helpers import SIZE, write_sorted


def test_surface_pool_from_two_products_and_a_user_folder(tmp_path):
    write_sorted(tmp_path, "A", [0.9, 0.1, 0.6], seed=1)
    write_sorted(tmp_path, "B", [0.0, 0.2], seed=2)
    user = tmp_path / "user"
    user.mkdir()
    picture = np.full((2 * SIZE + 5, 2 * SIZE + 3, 3), 90, np.uint8)  # 2 x 2 tiles + a ragged border
    picture[SIZE:2 * SIZE, SIZE:2 * SIZE] = 0  # one all-black tile, skipped
    Image.fromarray(picture).save(user / "scene.png")
    (user / "notes.txt").write_text("not an image")
    result = surface_tiles.build(tmp_path, surface_tiles.SurfaceTilesConfig(extra_surface_dir=str(user)),
                                 products=["B", "A", "B"])  # any order, repeats: pooled once, in id order

    f = result.figures()
    assert (f["count"], f["land"], f["ocean"], f["user"], f["user_tiles_skipped_black"]) == (8, 2, 3, 3, 1)
    assert (f["products"], f["tile_size"]) == (2, SIZE)
    assert f["per_product"] == result.per_product == {"A": 3, "B": 2}
    assert f["index"] == tmp_path / "surface_tiles" / "index.csv" and "empty" not in f
    pool = surface_tiles.read(tmp_path)
    assert pool.images.shape == (8, SIZE, SIZE, 3)
    assert (tmp_path / "surface_tiles" / "index.csv").read_text().splitlines()[0] == ",".join(surface_tiles.COLUMNS)
    assert [r["source"] for r in pool.index] == ["A:0:32", "A:16:32", "A:32:32", "B:0:32", "B:16:32",
                                                 "user:scene.png:0:0", "user:scene.png:0:16", "user:scene.png:16:0"]
    assert [r["surface"] for r in pool.index] == list(range(8))
    np.testing.assert_array_equal(pool.images[3], read_sorted(tmp_path, "B").surface.images[0])
    np.testing.assert_array_equal(pool.images[7], picture[SIZE:2 * SIZE, :SIZE])
    assert pool.index[5]["land_fraction"] is None and pool.index[5]["mean_brightness"] == 90.0
    assert pool.index[0]["land_fraction"] == 0.9 and pool.index[0]["product"] == "A"
    shown = result.preview()
    assert shown is not None and shown.image.ndim == 3 and "first 8 of 8" in shown.caption
    assert result.notes == ()


def test_user_image_smaller_than_a_tile_is_named(tmp_path):
    user = tmp_path / "user"
    user.mkdir()
    Image.fromarray(np.full((SIZE - 1, 40, 3), 50, np.uint8)).save(user / "tiny.jpg")
    config = surface_tiles.SurfaceTilesConfig(extra_surface_dir=str(user), tile_size=SIZE)
    with pytest.raises(CloudGANError, match=r"tiny\.jpg: image is 15 x 40 px, smaller than one 16 x 16 tile"):
        surface_tiles.build(tmp_path, config)
    assert not (tmp_path / "surface_tiles").exists()


def test_user_image_too_large_is_refused_before_decoding(tmp_path, monkeypatch):
    user = tmp_path / "user"
    user.mkdir()
    Image.fromarray(np.full((40, 50, 3), 50, np.uint8)).save(user / "big.png")
    monkeypatch.setattr(surface_tiles, "MAX_USER_IMAGE_PIXELS", 40 * 50 - 1)
    with pytest.raises(CloudGANError, match=r"big\.png: image is 40 x 50 px, more than the 1999 pixels allowed"):
        surface_tiles.build(tmp_path, surface_tiles.SurfaceTilesConfig(extra_surface_dir=str(user), tile_size=SIZE))


def test_products_with_different_tile_sizes_are_refused(tmp_path):
    write_sorted(tmp_path, "A", [0.1])
    write_sorted(tmp_path, "B", [0.1], size=8)
    with pytest.raises(CloudGANError, match="sorted_tiles/B/surface has 8 px tiles but A has 16 px"):
        surface_tiles.build(tmp_path, products=["A", "B"])


def test_empty_pool_is_written_with_a_note(tmp_path):
    write_sorted(tmp_path, "A", [])
    result = surface_tiles.build(tmp_path, products=["A"])
    assert result.count == 0 and result.tile_size == 256 and result.preview() is None
    assert result.figures()["empty"] == "the surface pool is empty"
    assert surface_tiles.read(tmp_path).images.shape == (0, 256, 256, 3)
    assert "empty" in result.notes[0]


def test_read_names_what_is_missing(tmp_path):
    with pytest.raises(MissingInputError, match="materialize surface_tiles first"):
        surface_tiles.read(tmp_path)
    write_sorted(tmp_path, "A", [0.5])
    surface_tiles.build(tmp_path, products=["A"])
    (tmp_path / "surface_tiles" / "images.npy").unlink()
    with pytest.raises(CloudGANError, match="no surface pool; materialize surface_tiles first"):
        surface_tiles.read(tmp_path)


def test_config_checks_the_tile_size():
    with pytest.raises(ValidationError, match="tile_size must be a positive multiple of 4"):
        surface_tiles.SurfaceTilesConfig(tile_size=250)
    with pytest.raises(ValidationError):
        surface_tiles.SurfaceTilesConfig(tile_sise=256)  # a misspelt field is an error, not ignored
