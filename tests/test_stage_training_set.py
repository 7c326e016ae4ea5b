"""The training_set stage: its layout (write/read), determinism, atomic replacement, and build."""

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
import xarray as xr
from PIL import Image
from pydantic import ValidationError

from cloudgan_core.atomic import MissingInputError
from cloudgan_core.errors import CloudGANError
from cloudgan_core.stages import training_set
from cloudgan_core.stages.training_set import TrainingPair
from cloudgan_core.validation import check_training_set_aligned
from tests.stage_helpers import MODEL_SHA, SIZE, composites_of, make_pairs, pool_of_two, provenance

SHA = "ab" * 32


# --------------------------------------------------------------------------- write / read (the layout)


def test_layout_manifest_card_and_zip(tmp_path: Path) -> None:
    pairs = make_pairs()
    dest = tmp_path / "training_set"
    summary = training_set.write(tmp_path, pairs, provenance=provenance(7),
                                 extra_card={"shadows": True})
    assert summary.path == dest
    names = [f"{k:05d}.png" for k in range(1, 7)]
    for folder in ("images", "masks", "shadows", "clouds", "surface"):
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
        "shadow_fraction": round(float(pairs[1].shadow.mean()), 6),
        "surface_source": "S3B_SURF:1:0",
        "bands_source": "product",
        "split": pairs[1].split,
        "generator": "gan",
        "model_sha256": SHA,
        "seed": 7,
        "blend": "render",
        "shadows": True,
    }

    assert summary.count == 6
    assert sum(summary.split_counts.values()) == 6
    assert summary.split_counts == dict(Counter(p.split for p in pairs)) | {
        s: 0 for s in ("train", "val", "test") if s not in {p.split for p in pairs}
    }
    assert sum(summary.histogram["counts"]) == 6 and summary.histogram["edges"][-1] == 100.0
    products_in = [set(v) for v in summary.split_products.values()]
    assert all(not (a & b) for i, a in enumerate(products_in) for b in products_in[i + 1 :])
    assert summary.tile_shape == (16, 16)
    assert summary.zip_path == dest / "training_set.zip"

    card = (dest / "README.md").read_text()
    assert "pairs: 6" in card and SHA in card and "- shadows: true" in card and "- shadows: on" in card
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
            "shadows",
            "clouds",
            "surface",
        }
        assert {"train.nc", "val.nc", "test.nc"} <= set(listed)
        assert len(listed) == 5 * 6 + 2 + 3
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in infos)
        assert all((i.external_attr >> 16) & 0o777 == 0o644 for i in infos)
        assert zf.read("masks/00004.png") == (dest / "masks" / "00004.png").read_bytes()
    assert hashlib.sha256(summary.zip_path.read_bytes()).hexdigest() == summary.zip_sha256
    assert training_set.read(tmp_path).zip_sha256() == summary.zip_sha256


def test_same_inputs_same_bytes(tmp_path: Path) -> None:
    pairs = make_pairs(seed=3)
    a = training_set.write(tmp_path / "a", pairs, provenance=provenance(1))
    b = training_set.write(tmp_path / "b", iter(pairs), provenance=provenance(1))
    assert a.zip_path.read_bytes() == b.zip_path.read_bytes()
    assert a.zip_sha256 == b.zip_sha256
    c = training_set.write(tmp_path / "c", pairs, provenance=provenance(2))
    assert c.zip_sha256 != a.zip_sha256  # the seed is part of the manifest


def test_read_back_round_trip(tmp_path: Path) -> None:
    pairs = make_pairs(seed=5)
    training_set.write(tmp_path, pairs, provenance=provenance(0))
    data = training_set.read(tmp_path)
    images, masks, rows = data.arrays("images"), data.arrays("masks"), data.manifest
    assert images.shape == (6, 16, 16, 3) and masks.shape == (6, 16, 16)
    assert np.array_equal(images, np.stack([p.image for p in pairs]))
    assert np.array_equal(masks, np.stack([p.mask for p in pairs]))
    assert [r["product"] for r in rows] == [p.product for p in pairs]
    clouds, surfaces = data.arrays("clouds"), data.arrays("surface")
    assert np.array_equal(surfaces, np.stack([p.surface for p in pairs]))
    assert np.array_equal(clouds, np.stack([p.cloud for p in pairs]))
    idx = data.numbers()
    assert set(idx) == {"images", "masks", "shadows", "clouds", "surface", "manifest"}
    assert np.array_equal(data.arrays("shadows"), np.stack([p.shadow for p in pairs]))
    nc = data.netcdf(["bands", "surface", "snow_mask"])
    assert np.array_equal(nc["bands"], np.stack([p.bands for p in pairs]))
    assert np.array_equal(nc["surface"], np.stack([p.surface_bands for p in pairs]))
    assert np.array_equal(nc["snow_mask"], np.stack([p.snow for p in pairs]))
    assert all(v == list(range(1, 7)) for v in idx.values())
    stored = data.stored("masks", idx["masks"])
    assert np.array_equal(stored[0], pairs[0].mask * 255)  # as stored: 0/255


def test_read_reports_missing_and_bad_masks(tmp_path: Path) -> None:
    dest = tmp_path / "training_set"
    training_set.write(tmp_path, make_pairs(n=3), provenance=provenance(0))
    good_mask = (dest / "masks" / "00002.png").read_bytes()
    Image.fromarray(np.full((16, 16), 7, np.uint8)).save(dest / "masks" / "00002.png")
    with pytest.raises(CloudGANError, match="00002.png.*0 or 255"):
        training_set.read(tmp_path).arrays("masks")
    (dest / "masks" / "00002.png").write_bytes(good_mask)
    (dest / "images" / "00003.png").unlink()
    with pytest.raises(CloudGANError, match="00003.png"):
        training_set.read(tmp_path).arrays("images")
    with pytest.raises(MissingInputError, match="materialize training_set first"):
        training_set.read(tmp_path / "nothing")
    (dest / "manifest.jsonl").unlink()
    with pytest.raises(CloudGANError, match="no manifest"):
        training_set.read(tmp_path)


def test_a_manifest_line_naming_another_file_is_refused(tmp_path: Path) -> None:
    """A hostile manifest must not make the reader open a file outside the set."""
    training_set.write(tmp_path, make_pairs(n=2), provenance=provenance(0))
    manifest = tmp_path / "training_set" / "manifest.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    rows[1]["file"] = "../../../etc/passwd"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(CloudGANError, match=r"line 2 names file '\.\./\.\./\.\./etc/passwd', expected 00002\.png"):
        training_set.read(tmp_path)
    manifest.write_text("not json\n")
    with pytest.raises(CloudGANError, match="line 1 is not a pair record"):
        training_set.read(tmp_path)


def test_crash_midway_keeps_previous_set(tmp_path: Path) -> None:
    dest = tmp_path / "training_set"
    old = training_set.write(tmp_path, make_pairs(n=4, seed=1), provenance=provenance(0))
    old_zip = old.zip_path.read_bytes()
    old_files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*"))

    def exploding() -> Iterator[TrainingPair]:
        for k, pair in enumerate(make_pairs(n=6, seed=2)):
            if k == 3:
                raise RuntimeError("generator died")
            yield pair

    with pytest.raises(RuntimeError, match="generator died"):
        training_set.write(tmp_path, exploding(), provenance=provenance(0))
    assert (dest / "training_set.zip").read_bytes() == old_zip
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == old_files
    assert [p.name for p in tmp_path.iterdir()] == ["training_set"]  # no temporary folder left behind


def test_rewrite_replaces_whole_set(tmp_path: Path) -> None:
    dest = tmp_path / "training_set"
    training_set.write(tmp_path, make_pairs(n=6), provenance=provenance(0))
    new = training_set.write(tmp_path, make_pairs(n=2), provenance=provenance(0))
    assert new.count == 2
    assert sorted(p.name for p in (dest / "images").iterdir()) == ["00001.png", "00002.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["training_set"]


def test_invalid_pairs_rejected(tmp_path: Path) -> None:
    good = make_pairs(n=3)
    other_split = "test" if good[0].split != "test" else "train"
    bad_split = [good[0], replace(good[1], product=good[0].product, split=other_split)]
    with pytest.raises(CloudGANError, match="one split"):
        training_set.write(tmp_path / "a", bad_split, provenance=provenance(0))
    bad_mask = [replace(good[0], mask=good[0].mask * 255)]
    with pytest.raises(CloudGANError, match="pair 1"):
        training_set.write(tmp_path / "b", bad_mask, provenance=provenance(0))
    bad_size = [good[0], replace(good[1], image=good[1].image[:8])]
    with pytest.raises(CloudGANError, match="pair 2"):
        training_set.write(tmp_path / "c", bad_size, provenance=provenance(0))
    overlap = [replace(good[0], shadow=good[0].mask)]
    with pytest.raises(CloudGANError, match=r"pair 1 \(.*\): a pixel is both cloud and shadow"):
        training_set.write(tmp_path / "d", overlap, provenance=provenance(0))
    no_bands = [replace(good[0], bands=good[0].bands[:3])]
    with pytest.raises(CloudGANError, match=r"pair 1 \(.*\): bands must be a \(9, H, W\) array"):
        training_set.write(tmp_path / "e", no_bands, provenance=provenance(0))
    assert all(not any(p.iterdir()) for p in tmp_path.iterdir())  # nothing left in a, b, c, d or e


def test_empty_set_is_written(tmp_path: Path) -> None:
    summary = training_set.write(tmp_path, [], provenance=provenance(0))
    assert summary.count == 0 and summary.tile_shape is None
    with xr.open_dataset(tmp_path / "training_set" / "val.nc") as ds:
        assert ds.sizes["pair"] == 0 and ds.attrs["split"] == "val"
    data = training_set.read(tmp_path)
    assert data.arrays("images").shape[0] == 0 and data.arrays("masks").shape[0] == 0 and data.manifest == []


# --------------------------------------------------------------------------- build (from composites)


def test_training_set_is_deterministic_and_order_free(tmp_path):
    pool_of_two(tmp_path)
    keys = composites_of(tmp_path, {"A": 5, "B": 4})
    first = training_set.build(tmp_path, training_set.TrainingSetConfig(seed=3), products=keys)
    zip1 = (tmp_path / "training_set" / "training_set.zip").read_bytes()
    second = training_set.build(tmp_path, training_set.TrainingSetConfig(seed=3), products=list(reversed(keys)))
    zip2 = (tmp_path / "training_set" / "training_set.zip").read_bytes()
    assert zip1 == zip2
    assert first.zip_sha256 == second.zip_sha256 == hashlib.sha256(zip1).hexdigest()
    f = first.figures()
    assert f["count"] == f["candidates"] == 9 and f["partitions"] == 2
    assert f["train_pairs"] + f["val_pairs"] + f["test_pairs"] == 9
    assert f["zip"] == tmp_path / "training_set" / "training_set.zip"
    assert sum(first.summary.histogram["counts"]) == 9 and "| cloud cover | pairs |" in f["cover_histogram"]
    assert sorted(sum(f["split_products"].values(), [])) == ["A", "B"]
    manifest = training_set.read(tmp_path).manifest
    assert {m["product"] for m in manifest} == {"A", "B"} and {m["model_sha256"] for m in manifest} == {MODEL_SHA}
    assert first.preview().caption.startswith("mask | cloud | surface | composite") and first.notes == ()
    other = training_set.build(tmp_path, training_set.TrainingSetConfig(seed=4, max_pairs=5), products=keys)
    assert other.summary.count == 5 and other.zip_sha256 != first.zip_sha256


def test_cover_range_is_in_percent(tmp_path):
    pool_of_two(tmp_path)
    keys = composites_of(tmp_path, {"A": 5})  # covers 14.0625, 23.4375, 32.8125, 42.1875, 51.5625 %
    result = training_set.build(tmp_path, training_set.TrainingSetConfig(min_cover=23.4375, max_cover=50),
                                products=keys)
    covers = [100 * m["cloud_fraction"] for m in training_set.read(tmp_path).manifest]
    assert result.summary.count == 2 and covers == [32.8125, 42.1875]  # (23.4375, 50]: the low edge is out
    card = (tmp_path / "training_set" / "README.md").read_text()
    assert '"cover_range": "(23.4375, 50] %"' in card
    empty = training_set.build(tmp_path, training_set.TrainingSetConfig(min_cover=90), products=keys)
    assert empty.summary.count == 0 and empty.preview() is None
    assert empty.notes == ("the training set is empty: no composite pair in the cover range (90, 100] %",)
    old_style = training_set.build(tmp_path, training_set.TrainingSetConfig(min_cover=0.1, max_cover=0.95),
                                   products=keys)  # fractions, as before the cover became percent
    assert old_style.summary.count == 0 and "percent (0..100), no longer fractions" in old_style.notes[1]


def test_training_set_config_checks_its_settings():
    for values, texts in (({"train_fraction": 0.9}, ["train_fraction", "sum to 1"]),
                          ({"val_fraction": -0.1, "train_fraction": 1.0}, ["val_fraction", "[0, 1]"]),
                          ({"min_cover": 80, "max_cover": 20}, ["min_cover", "max_cover", "percent"]),
                          ({"max_cover": 1.5, "min_cover": 2}, ["0 <= min_cover < max_cover <= 100"]),
                          ({"cover_bins": 0}, ["cover_bins", "[1, 1000]"]),
                          ({"max_pairs": -1}, ["max_pairs", ">= 0"])):
        with pytest.raises(ValidationError) as err:
            training_set.TrainingSetConfig(**values)
        for text in texts:
            assert text in str(err.value)


def test_training_set_refuses_partitions_with_different_blends(tmp_path):
    from cloudgan_core.stages.composites import CompositesConfig

    pool_of_two(tmp_path)
    composites_of(tmp_path, {"A": 2})
    composites_of(tmp_path, {"B": 2}, CompositesConfig(blend="original"))
    with pytest.raises(CloudGANError, match=r"differ in blend \(\"original\": B; \"render\": A\)"):
        training_set.build(tmp_path, products=["A", "B"])
    assert not (tmp_path / "training_set").exists()


def test_training_set_pngs_align(tmp_path):
    pool_of_two(tmp_path)
    training_set.build(tmp_path, products=composites_of(tmp_path, {"A": 5, "B": 4}))
    data = training_set.read(tmp_path)
    numbers = data.numbers()
    images, masks = data.stored("images", numbers["images"]), data.stored("masks", numbers["masks"])
    assert numbers["images"] == list(range(1, 10)) and images[0].shape == (SIZE, SIZE, 3)
    assert check_training_set_aligned(numbers, images, masks).passed
    (tmp_path / "training_set" / "clouds" / "00004.png").unlink()
    numbers = data.numbers()
    outcome = check_training_set_aligned(numbers, images, masks)
    assert not outcome.passed and outcome.description.startswith("clouds numbers differ") and \
        outcome.metadata["missing"] == [4]
