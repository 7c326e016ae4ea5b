"""Training-set export: splits, selection, layout, determinism, atomic replacement, reading back."""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cloudgan_core.composite import composite
from cloudgan_core.errors import CloudGANError
from cloudgan_core.export import (
    TrainingPair,
    pair_file_index,
    read_training_set,
    read_training_sources,
    select_pairs,
    split_by_product,
    write_training_set,
)

SHA = "ab" * 32


def make_pairs(n: int = 6, size: int = 16, seed: int = 0) -> list[TrainingPair]:
    rng = np.random.default_rng(seed)
    surface = rng.integers(10, 120, (n, size, size, 3), dtype=np.uint8)
    clouds = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    masks = (rng.random((n, size, size)) < np.linspace(0.05, 0.95, n)[:, None, None]).astype(
        np.uint8
    )
    images = composite(surface, clouds, masks)
    products = [f"S3A_P{k % 3}" for k in range(n)]
    splits = split_by_product(products, seed=1)
    return [
        TrainingPair(
            image=images[k],
            mask=masks[k],
            cloud=clouds[k],
            surface=surface[k],
            product=products[k],
            row=16 * k,
            col=32,
            cloud_fraction=float(masks[k].mean()),
            surface_source=f"S3B_SURF:{k}:0",
            split=splits[products[k]],
        )
        for k in range(n)
    ]


# --------------------------------------------------------------------------- split_by_product


@pytest.mark.parametrize(
    "n, expected",
    [
        (1, (1, 0, 0)),
        (2, (1, 0, 1)),
        (3, (1, 1, 1)),
        (4, (2, 1, 1)),
        (10, (8, 1, 1)),
        (20, (16, 2, 2)),
    ],
)
def test_split_counts(n: int, expected: tuple[int, int, int]) -> None:
    products = [f"P{k:02d}" for k in range(n)]
    got = split_by_product(products, seed=0)
    assert set(got) == set(products)
    counts = Counter(got.values())
    assert (counts["train"], counts["val"], counts["test"]) == expected


def test_split_is_deterministic_and_order_free() -> None:
    products = [f"P{k}" for k in range(12)]
    a = split_by_product(products, seed=4)
    b = split_by_product(list(reversed(products)) + products[:3], seed=4)  # order, repeats
    assert a == b
    assert any(split_by_product(products, seed=s) != a for s in range(1, 6))


def test_split_fractions_validated() -> None:
    for bad in [(0.5, 0.2, 0.2), (0.0, 0.5, 0.5), (1.2, -0.1, -0.1), (0.5, 0.5)]:
        with pytest.raises(CloudGANError):
            split_by_product(["A", "B"], fractions=bad, seed=0)  # type: ignore[arg-type]
    assert split_by_product(["A", "B", "C"], fractions=(1.0, 0.0, 0.0), seed=0) == {
        "A": "train",
        "B": "train",
        "C": "train",
    }


# --------------------------------------------------------------------------- select_pairs


def test_select_cover_range_and_max_pairs() -> None:
    f = np.array([0.0, 0.05, 0.2, 0.5, 0.5, 0.9, 1.0, np.nan])
    assert select_pairs(f, cover_range=(0.05, 0.9)).tolist() == [1, 2, 3, 4, 5]
    some = select_pairs(f, cover_range=(0.0, 1.0), max_pairs=3, seed=2)
    assert some.size == 3 and np.all(np.diff(some) > 0) and 7 not in some
    assert np.array_equal(some, select_pairs(f, cover_range=(0.0, 1.0), max_pairs=3, seed=2))
    assert select_pairs(f, max_pairs=0).size == 0
    with pytest.raises(CloudGANError):
        select_pairs(f, cover_range=(0.6, 0.2))


def test_select_balanced_across_bins() -> None:
    rng = np.random.default_rng(0)
    # skewed: many low-cover candidates, few high-cover ones
    f = np.concatenate(
        [rng.uniform(0.0, 0.2, 60), rng.uniform(0.4, 0.6, 10), rng.uniform(0.8, 1.0, 3)]
    )
    got = select_pairs(f, 5, balanced=True, max_pairs=21, seed=1)
    bins = np.minimum((f[got] * 5).astype(int), 4)
    counts = Counter(bins.tolist())
    assert got.size == 21
    assert counts[4] == 3  # the small bin gives all it has
    assert counts[0] == 9 and counts[2] == 9 and counts[1] == 0  # the rest shared evenly
    no_max = select_pairs(f, 5, balanced=True, seed=1)
    assert Counter(np.minimum((f[no_max] * 5).astype(int), 4).tolist()) == {0: 3, 2: 3, 4: 3}
    assert np.array_equal(got, select_pairs(f, 5, balanced=True, max_pairs=21, seed=1))
    assert not np.array_equal(got, select_pairs(f, 5, balanced=True, max_pairs=21, seed=2))


def test_select_balanced_explicit_edges_include_top() -> None:
    f = np.array([0.0, 0.25, 0.5, 1.0, 1.0])
    got = select_pairs(f, [0.0, 0.5, 1.0], balanced=True, seed=0)
    assert sorted(Counter(np.where(f[got] < 0.5, 0, 1).tolist()).values()) == [2, 2]


# --------------------------------------------------------------------------- write / read


def test_layout_manifest_card_and_zip(tmp_path: Path) -> None:
    pairs = make_pairs()
    dest = tmp_path / "training_set"
    summary = write_training_set(
        dest, pairs, model_sha256=SHA, seed=7, blend="alpha", extra_card={"min_opacity": 0.35}
    )
    names = [f"{k:05d}.png" for k in range(1, 7)]
    for folder in ("images", "masks", "clouds", "surface"):
        assert sorted(p.name for p in (dest / folder).iterdir()) == names
    mask_png = np.asarray(Image.open(dest / "masks" / "00001.png"))
    assert mask_png.ndim == 2 and set(np.unique(mask_png)) <= {0, 255}
    assert np.array_equal(mask_png, pairs[0].mask * 255)
    assert np.array_equal(np.asarray(Image.open(dest / "surface" / "00003.png")), pairs[2].surface)
    assert np.array_equal(np.asarray(Image.open(dest / "clouds" / "00003.png")), pairs[2].cloud)

    rows = [json.loads(line) for line in (dest / "manifest.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(1, 7))
    assert rows[1] == {
        "index": 2,
        "file": "00002.png",
        "product": pairs[1].product,
        "row": 16,
        "col": 32,
        "cloud_fraction": round(pairs[1].cloud_fraction, 6),
        "surface_source": "S3B_SURF:1:0",
        "split": pairs[1].split,
        "model_sha256": SHA,
        "seed": 7,
        "blend": "alpha",
    }

    assert summary.count == 6
    assert sum(summary.split_counts.values()) == 6
    assert summary.split_counts == dict(Counter(p.split for p in pairs)) | {
        s: 0 for s in ("train", "val", "test") if s not in {p.split for p in pairs}
    }
    assert sum(summary.histogram["counts"]) == 6
    products_in = [set(v) for v in summary.split_products.values()]
    assert all(not (a & b) for i, a in enumerate(products_in) for b in products_in[i + 1 :])
    assert summary.tile_shape == (16, 16)
    assert summary.zip_path == dest / "training_set.zip"

    card = (dest / "README.md").read_text()
    assert "pairs: 6" in card and SHA in card and "min_opacity: 0.35" in card
    assert "| [90 %, 100 %] |" in card and "| train |" in card

    with zipfile.ZipFile(summary.zip_path) as zf:
        infos = zf.infolist()
        listed = [i.filename for i in infos]
        assert listed == sorted(listed)
        assert "manifest.jsonl" in listed and "README.md" in listed
        assert "training_set.zip" not in listed
        assert {n.split("/")[0] for n in listed if "/" in n} == {
            "images",
            "masks",
            "clouds",
            "surface",
        }
        assert len(listed) == 4 * 6 + 2
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in infos)
        assert all((i.external_attr >> 16) & 0o777 == 0o644 for i in infos)
        assert zf.read("masks/00004.png") == (dest / "masks" / "00004.png").read_bytes()
    assert hashlib.sha256(summary.zip_path.read_bytes()).hexdigest() == summary.zip_sha256
    assert summary.as_metadata()["zip_sha256"] == summary.zip_sha256


def test_same_inputs_same_bytes(tmp_path: Path) -> None:
    pairs = make_pairs(seed=3)
    a = write_training_set(tmp_path / "a", pairs, model_sha256=SHA, seed=1, blend="alpha")
    b = write_training_set(tmp_path / "b", iter(pairs), model_sha256=SHA, seed=1, blend="alpha")
    assert a.zip_path.read_bytes() == b.zip_path.read_bytes()
    assert a.zip_sha256 == b.zip_sha256
    c = write_training_set(tmp_path / "c", pairs, model_sha256=SHA, seed=2, blend="alpha")
    assert c.zip_sha256 != a.zip_sha256  # the seed is part of the manifest


def test_read_back_round_trip(tmp_path: Path) -> None:
    pairs = make_pairs(seed=5)
    dest = tmp_path / "ts"
    write_training_set(dest, pairs, model_sha256=SHA, seed=0, blend="alpha")
    images, masks, rows = read_training_set(dest)
    assert images.shape == (6, 16, 16, 3) and masks.shape == (6, 16, 16)
    assert np.array_equal(images, np.stack([p.image for p in pairs]))
    assert np.array_equal(masks, np.stack([p.mask for p in pairs]))
    assert [r["product"] for r in rows] == [p.product for p in pairs]
    clouds, surfaces = read_training_sources(dest)
    assert np.array_equal(surfaces, np.stack([p.surface for p in pairs]))
    assert np.array_equal(clouds, np.stack([p.cloud for p in pairs]))
    idx = pair_file_index(dest)
    assert all(v == list(range(1, 7)) for v in idx.values())


def test_read_reports_missing_and_bad_masks(tmp_path: Path) -> None:
    dest = tmp_path / "ts"
    write_training_set(dest, make_pairs(n=3), model_sha256=SHA, seed=0, blend="alpha")
    good_mask = (dest / "masks" / "00002.png").read_bytes()
    Image.fromarray(np.full((16, 16), 7, np.uint8)).save(dest / "masks" / "00002.png")
    with pytest.raises(CloudGANError, match="00002.png.*0 or 255"):
        read_training_set(dest)
    (dest / "masks" / "00002.png").write_bytes(good_mask)
    (dest / "images" / "00003.png").unlink()
    with pytest.raises(CloudGANError, match="00003.png"):
        read_training_set(dest)
    with pytest.raises(CloudGANError, match="no manifest"):
        read_training_set(tmp_path / "nothing")


def test_crash_midway_keeps_previous_set(tmp_path: Path) -> None:
    dest = tmp_path / "ts"
    old = write_training_set(dest, make_pairs(n=4, seed=1), model_sha256=SHA, seed=0, blend="alpha")
    old_zip = old.zip_path.read_bytes()
    old_files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*"))

    def exploding() -> Iterator[TrainingPair]:
        for k, pair in enumerate(make_pairs(n=6, seed=2)):
            if k == 3:
                raise RuntimeError("generator died")
            yield pair

    with pytest.raises(RuntimeError, match="generator died"):
        write_training_set(dest, exploding(), model_sha256=SHA, seed=0, blend="alpha")
    assert (dest / "training_set.zip").read_bytes() == old_zip
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == old_files
    assert [p.name for p in tmp_path.iterdir()] == ["ts"]  # no temporary folder left behind


def test_rewrite_replaces_whole_set(tmp_path: Path) -> None:
    dest = tmp_path / "ts"
    write_training_set(dest, make_pairs(n=6), model_sha256=SHA, seed=0, blend="alpha")
    new = write_training_set(dest, make_pairs(n=2), model_sha256=SHA, seed=0, blend="alpha")
    assert new.count == 2
    assert sorted(p.name for p in (dest / "images").iterdir()) == ["00001.png", "00002.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["ts"]


def test_invalid_pairs_rejected(tmp_path: Path) -> None:
    good = make_pairs(n=3)
    other_split = "test" if good[0].split != "test" else "train"
    bad_split = [good[0], replace(good[1], product=good[0].product, split=other_split)]
    with pytest.raises(CloudGANError, match="one split"):
        write_training_set(tmp_path / "a", bad_split, model_sha256=SHA, seed=0, blend="alpha")
    bad_mask = [replace(good[0], mask=good[0].mask * 255)]
    with pytest.raises(CloudGANError, match="pair 1"):
        write_training_set(tmp_path / "b", bad_mask, model_sha256=SHA, seed=0, blend="alpha")
    bad_size = [good[0], replace(good[1], image=good[1].image[:8])]
    with pytest.raises(CloudGANError, match="pair 2"):
        write_training_set(tmp_path / "c", bad_size, model_sha256=SHA, seed=0, blend="alpha")
    assert list(tmp_path.iterdir()) == []


def test_empty_set_is_written(tmp_path: Path) -> None:
    summary = write_training_set(tmp_path / "ts", [], model_sha256=SHA, seed=0, blend="alpha")
    assert summary.count == 0 and summary.tile_shape is None
    images, masks, rows = read_training_set(tmp_path / "ts")
    assert images.shape[0] == 0 and masks.shape[0] == 0 and rows == []
