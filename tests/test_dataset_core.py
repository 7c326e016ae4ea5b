"""The dataset stages of cloudgan_core.dataset called directly, without Dagster, on small folders."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cloudgan_core.dataset import (COMPOSITE_COLUMNS, SURFACE_COLUMNS, build_quality_report, build_surface_pool,
                                   build_training_set, composite_product, cover_histogram_markdown, derived_seed,
                                   load_composites, load_training_pngs, read_csv_rows)
from cloudgan_core.validation import (check_composites_aligned, check_composites_sane, check_training_set_aligned,
                                      cloud_fractions)
from cloudgan_core.errors import CloudGANError
from cloudgan_core.export import read_manifest
from cloudgan_core.stages.tiles import write_group, write_index
from cloudgan_core.tiles import Tiles
from cloudgan_core.validation import check_outside_mask_unchanged

SIZE = 16
MODEL_SHA = hashlib.sha256(b"test generator").hexdigest()


def write_sorted(root: Path, key: str, land: list[float], size: int = SIZE, seed: int = 0) -> Path:
    """A ``sorted_tiles/<key>`` folder whose ``surface/`` holds len(land) random textured tiles."""
    rng = np.random.default_rng(seed)
    n = len(land)
    images = rng.integers(20, 120, size=(n, size, size, 3), dtype=np.uint8)
    index = [{"tile": i, "product": key, "row": i * size, "col": 2 * size, "land_fraction": lf}
             for i, lf in enumerate(land)]
    folder = root / "sorted_tiles" / key
    write_group(folder / "surface", Tiles(images, np.zeros((n, size, size), np.uint8), index))
    return folder


def write_clouds(root: Path, key: str, n: int, *, seed: int, model_sha: str = MODEL_SHA) -> Path:
    """A ``synthetic_clouds/<key>`` folder: block masks of growing cover and bright clouds on them."""
    masks = np.zeros((n, SIZE, SIZE), np.uint8)
    for i in range(n):
        masks[i, : 3 + 2 * i, 2:14] = 1
    rng = np.random.default_rng(seed)
    level = np.where(masks == 1, 230, 30) + rng.integers(0, 20, size=masks.shape)
    clouds = np.repeat(level[..., None], 3, axis=-1).astype(np.uint8)
    folder = root / "synthetic_clouds" / key
    folder.mkdir(parents=True)
    np.save(folder / "clouds.npy", clouds)
    np.save(folder / "masks.npy", masks)
    index = [{"tile": i, "product": key, "row": i * SIZE, "col": 0} for i in range(n)]
    write_index(folder / "index.csv", index)
    (folder / "clouds.json").write_text(json.dumps({"model_sha256": model_sha, "model": "test", "seed": seed}))
    return folder


@pytest.fixture
def pool(tmp_path):
    """Two products' sorted tiles pooled into ``surface_tiles``; returns (root, result)."""
    sorted_dirs = {"A": write_sorted(tmp_path, "A", [0.9, 0.1, 0.6], seed=1),
                   "B": write_sorted(tmp_path, "B", [0.0, 0.2], seed=2)}
    return tmp_path, build_surface_pool(sorted_dirs, tmp_path / "surface_tiles")


def composites_of(root: Path, keys_and_counts: dict[str, int], **settings) -> dict[str, Path]:
    out = {}
    for j, (key, n) in enumerate(keys_and_counts.items()):
        out[key] = root / "composites" / key
        composite_product(write_clouds(root, key, n, seed=j), root / "surface_tiles", out[key], key=key, **settings)
    return out


# --------------------------------------------------------------------------- surface pool


def test_surface_pool_from_two_products_and_a_user_folder(tmp_path):
    sorted_dirs = {"A": write_sorted(tmp_path, "A", [0.9, 0.1, 0.6], seed=1),
                   "B": write_sorted(tmp_path, "B", [0.0, 0.2], seed=2)}
    user = tmp_path / "user"
    user.mkdir()
    picture = np.full((2 * SIZE + 5, 2 * SIZE + 3, 3), 90, np.uint8)  # 2 x 2 tiles + a ragged border
    picture[SIZE:2 * SIZE, SIZE:2 * SIZE] = 0  # one all-black tile, skipped
    Image.fromarray(picture).save(user / "scene.png")
    (user / "notes.txt").write_text("not an image")
    result = build_surface_pool(sorted_dirs, tmp_path / "pool", extra_surface_dir=user)

    f = result.figures
    assert (f["count"], f["land"], f["ocean"], f["user"], f["user_tiles_skipped_black"]) == (8, 2, 3, 3, 1)
    assert (f["products"], f["tile_size"]) == (2, SIZE)
    assert result.details["per_product"] == {"A": 3, "B": 2}
    images = np.load(tmp_path / "pool" / "images.npy")
    rows = read_csv_rows(tmp_path / "pool" / "index.csv")
    assert images.shape == (8, SIZE, SIZE, 3) and list(rows[0]) == list(SURFACE_COLUMNS)
    assert [r["source"] for r in rows] == ["A:0:32", "A:16:32", "A:32:32", "B:0:32", "B:16:32",
                                           "user:scene.png:0:0", "user:scene.png:0:16", "user:scene.png:16:0"]
    np.testing.assert_array_equal(images[3], np.load(sorted_dirs["B"] / "surface" / "images.npy")[0])
    np.testing.assert_array_equal(images[7], picture[SIZE:2 * SIZE, :SIZE])
    assert rows[5]["land_fraction"] == "" and float(rows[5]["mean_brightness"]) == 90.0
    assert result.preview is not None and result.notes == []


def test_user_image_smaller_than_a_tile_is_named(tmp_path):
    user = tmp_path / "user"
    user.mkdir()
    Image.fromarray(np.full((SIZE - 1, 40, 3), 50, np.uint8)).save(user / "tiny.jpg")
    with pytest.raises(CloudGANError, match=r"tiny\.jpg: image is 15 x 40 px, smaller than one 16 x 16 tile"):
        build_surface_pool({}, tmp_path / "pool", extra_surface_dir=user, tile_size=SIZE)
    assert not (tmp_path / "pool").exists()


def test_products_with_different_tile_sizes_are_refused(tmp_path):
    dirs = {"A": write_sorted(tmp_path, "A", [0.1]), "B": write_sorted(tmp_path, "B", [0.1], size=8)}
    with pytest.raises(CloudGANError, match="sorted_tiles/B/surface has 8 px tiles but A has 16 px"):
        build_surface_pool(dirs, tmp_path / "pool")


def test_empty_pool_is_written_with_a_note(tmp_path):
    result = build_surface_pool({"A": write_sorted(tmp_path, "A", [])}, tmp_path / "pool")
    assert result.figures["count"] == 0 and result.figures["tile_size"] == 256 and result.preview is None
    assert np.load(tmp_path / "pool" / "images.npy").shape == (0, 256, 256, 3)
    assert "empty" in result.notes[0]


# --------------------------------------------------------------------------- composites


def test_composite_keeps_every_clear_pixel_of_its_surface(pool):
    root, _ = pool
    out = root / "composites" / "A"
    result = composite_product(write_clouds(root, "A", 4, seed=3), root / "surface_tiles", out, key="A")
    data = load_composites(out)
    cloudy = data["masks"].astype(bool)
    assert np.array_equal(data["images"][~cloudy], data["surfaces"][~cloudy])
    assert (data["images"][cloudy] != data["surfaces"][cloudy]).any(axis=-1).mean() > 0.95
    assert check_outside_mask_unchanged(data["images"], data["surfaces"], data["masks"]).passed
    assert check_composites_aligned(data).passed and check_composites_sane(data).passed
    assert list(data["index"][0]) == list(COMPOSITE_COLUMNS)
    # the surface behind each composite is the pool tile its row names, preferably from product B
    pool_images = np.load(root / "surface_tiles" / "images.npy")
    for r, surface in zip(data["index"], data["surfaces"]):
        np.testing.assert_array_equal(surface, pool_images[int(r["surface"])])
    assert [r["surface_product"] for r in data["index"]][:2] == ["B", "B"]
    summary = json.loads((out / "composites.json").read_text())
    assert summary["assignment_seed"] == derived_seed(0, "A") and summary["model_sha256"] == MODEL_SHA
    assert result.figures["count"] == 4 and result.figures["surfaces_used"] == 4
    assert result.figures["mean_brightness_change_inside"] > 0
    np.testing.assert_allclose(cloud_fractions(data["masks"]),
                               [float(r["cloud_fraction"]) for r in data["index"]], atol=1e-6)


def test_composite_refuses_unknown_blend_and_empty_pool(tmp_path):
    clouds = write_clouds(tmp_path, "A", 2, seed=0)
    build_surface_pool({}, tmp_path / "surface_tiles", tile_size=SIZE)
    with pytest.raises(CloudGANError, match="blend must be one of"):
        composite_product(clouds, tmp_path / "surface_tiles", tmp_path / "out", key="A", blend="screen")
    with pytest.raises(CloudGANError, match="is empty: no cloud-free surface tile to place the 2 cloud tile"):
        composite_product(clouds, tmp_path / "surface_tiles", tmp_path / "out", key="A")


def test_load_composites_names_a_missing_file(pool):
    root, _ = pool
    (out,) = composites_of(root, {"A": 2}).values()
    data = load_composites(out)
    data["surfaces"] = data["surfaces"][:, :8]
    assert not check_composites_aligned(data).passed
    (out / "clouds.npy").unlink()
    with pytest.raises(CloudGANError, match=r"clouds\.npy: missing; materialize composites for A"):
        load_composites(out)


# --------------------------------------------------------------------------- training set and report


def test_training_set_is_deterministic_and_order_free(pool):
    root, _ = pool
    dirs = composites_of(root, {"A": 5, "B": 4})
    first = build_training_set(dirs, root / "ts1", seed=3)
    second = build_training_set(dict(reversed(dirs.items())), root / "ts2", seed=3)
    zips = [(root / d / "training_set.zip").read_bytes() for d in ("ts1", "ts2")]
    assert zips[0] == zips[1]
    assert first.figures["zip_sha256"] == second.figures["zip_sha256"] == hashlib.sha256(zips[0]).hexdigest()
    assert first.figures["count"] == first.figures["candidates"] == 9 and first.figures["partitions"] == 2
    assert first.figures["train_pairs"] + first.figures["val_pairs"] + first.figures["test_pairs"] == 9
    assert first.details["zip_path"] == root / "ts1" / "training_set.zip"
    assert sum(first.details["cover_histogram"]["counts"]) == 9
    manifest = read_manifest(root / "ts1")
    assert {m["product"] for m in manifest} == {"A", "B"} and {m["model_sha256"] for m in manifest} == {MODEL_SHA}
    other = build_training_set(dirs, root / "ts3", seed=4, max_pairs=5)
    assert other.figures["count"] == 5 and other.figures["zip_sha256"] != first.figures["zip_sha256"]


def test_training_set_refuses_partitions_with_different_blends(pool):
    root, _ = pool
    dirs = composites_of(root, {"A": 2})
    dirs.update(composites_of(root, {"B": 2}, blend="original"))
    with pytest.raises(CloudGANError, match=r"differ in blend \(\"alpha\": A; \"original\": B\)"):
        build_training_set(dirs, root / "ts")
    assert not (root / "ts").exists()


def test_training_set_pngs_align_and_quality_report(pool):
    root, _ = pool
    ts = build_training_set(composites_of(root, {"A": 5, "B": 4}), root / "ts")
    numbers, images, masks = load_training_pngs(root / "ts")
    assert numbers["images"] == list(range(1, 10)) and images[0].shape == (SIZE, SIZE, 3)
    assert check_training_set_aligned(numbers, images, masks).passed
    report = build_quality_report(root / "ts", root / "qr")
    saved = json.loads((root / "qr" / "report.json").read_text())
    assert saved["zip_sha256"] == ts.figures["zip_sha256"] == report.details["report"]["zip_sha256"]
    assert report.figures["pairs"] == saved["n_pairs"] == 9
    assert report.figures["alpha_brightness_outside_abs"] == 0.0
    assert report.preview.ndim == 3 and (root / "qr" / "report.png").read_bytes()[:4] == b"\x89PNG"
    (root / "ts" / "clouds" / "00004.png").unlink()
    numbers, images, masks = load_training_pngs(root / "ts")
    outcome = check_training_set_aligned(numbers, images, masks)
    assert not outcome.passed and outcome.description.startswith("clouds numbers differ") and \
        outcome.metadata["missing"] == [4]


def test_cover_histogram_markdown():
    text = cover_histogram_markdown({"edges": [0.0, 0.5, 1.0], "counts": [3, 4]})
    assert text.splitlines() == ["| cloud cover | pairs |", "|---|---|", "| [0 %, 50 %) | 3 |", "| [50 %, 100 %] | 4 |"]
