"""The composites stage called directly, without Dagster: mask-exact rendering, read/write, errors."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from pydantic import ValidationError

from cloudgan_core.atomic import MissingInputError
from cloudgan_core.errors import CloudGANError
from cloudgan_core.stages import composites, surface_tiles
from cloudgan_core.validation import (check_composites_aligned, check_composites_sane, check_outside_mask_unchanged,
                                      cover_percent)
from tests.stage_helpers import MODEL_SHA, SIZE, composites_of, pool_of_two, write_clouds


def test_composite_keeps_every_clear_pixel_of_its_surface(tmp_path):
    pool_of_two(tmp_path)
    write_clouds(tmp_path, "A", 4, seed=3)
    result = composites.build(tmp_path, "A")
    data = composites.read(tmp_path, "A")
    cloudy = data.masks.astype(bool)
    clear = ~cloudy & (data.shadows == 0)
    assert np.array_equal(data.images[clear], data.surfaces[clear])
    assert (data.images[cloudy] != data.surfaces[cloudy]).any(axis=-1).mean() > 0.95
    assert check_outside_mask_unchanged(data.images, data.surfaces, data.masks, data.shadows).passed
    assert check_composites_aligned(data.images, data.masks, data.clouds, data.surfaces,
                                    [r["tile"] for r in data.index]).passed
    assert check_composites_sane(data.images, data.clouds, data.surfaces).passed
    header = (tmp_path / "composites" / "A" / "index.csv").read_text().splitlines()[0]
    assert header == ",".join(composites.COLUMNS)
    # the surface behind each composite is the pool tile its row names, preferably from product B
    pool = surface_tiles.read(tmp_path)
    for r, surface in zip(data.index, data.surfaces):
        np.testing.assert_array_equal(surface, pool.images[r["surface"]])
    assert [r["surface_product"] for r in data.index][:2] == ["B", "B"]
    summary = json.loads((tmp_path / "composites" / "A" / "composites.json").read_text())
    assert summary["assignment_seed"] == composites.derived_seed(0, "A") and summary["model_sha256"] == MODEL_SHA
    assert summary["blend"] == "render" and summary["shadows"] is True and summary["generator"] == "gan"
    assert summary == dataclasses.asdict(data.summary) and data.summary.clouds_seed == 3
    assert result.summary == data.summary
    f = result.figures()
    assert f["count"] == 4 and f["surfaces_used"] == 4 and f["mean_brightness_change_inside"] > 0
    assert 0.0 < f["mean_opacity"] <= 1.0 and f["index"] == tmp_path / "composites" / "A" / "index.csv"
    assert result.preview().caption == "mask | cloud | surface | composite | shadow"
    # the surface bands and flags are the pool's, the geometry the surface tile's
    for r, bands, flags in zip(data.index, data.surface_bands, data.surface_flags):
        np.testing.assert_array_equal(bands, pool.bands[r["surface"]])
        np.testing.assert_array_equal(flags, pool.flags[r["surface"]])
        assert r["solar_zenith"] == pool.index[r["surface"]]["solar_zenith"] and r["bands_source"] == "product"
    np.testing.assert_allclose(cover_percent(data.masks), [100 * r["cloud_fraction"] for r in data.index], atol=1e-4)


def test_derived_seed_is_sha256_of_seed_and_key():
    import hashlib

    assert composites.derived_seed(7, "A") == int.from_bytes(hashlib.sha256(b"7:A").digest()[:8], "big")
    assert composites.derived_seed(7, "A") != composites.derived_seed(7, "B")


def test_composite_refuses_unknown_blend_and_empty_pool(tmp_path):
    write_clouds(tmp_path, "A", 2, seed=0)
    surface_tiles.write(tmp_path, np.zeros((0, SIZE, SIZE, 3), np.uint8), [], np.zeros((0, 9, SIZE, SIZE), np.float32),
                        np.zeros((0, SIZE, SIZE), np.uint16))
    with pytest.raises(ValidationError, match="blend must be one of"):
        composites.build(tmp_path, "A", composites.CompositesConfig(blend="screen"))
    with pytest.raises(CloudGANError, match="is empty: no cloud-free surface tile to place the 2 cloud tile"):
        composites.build(tmp_path, "A")
    assert not (tmp_path / "composites").exists()


def test_composites_config_checks_its_settings():
    for values, text in (({"blend": "alpha"}, "blend must be one of"),
                         ({"min_opacity": 0.35}, "min_opacity: removed with the 8-bit alpha blend"),
                         ({"whiten": 0.5, "gamma": 1.0}, "gamma, whiten: removed"),
                         ({"shadow": False}, "Extra inputs are not permitted")):
        with pytest.raises(ValidationError) as err:
            composites.CompositesConfig(**values)
        assert text in str(err.value)


def test_read_names_a_missing_file_and_a_short_array(tmp_path):
    pool_of_two(tmp_path)
    composites_of(tmp_path, {"A": 2})
    data = composites.read(tmp_path, "A")
    narrow = data.surfaces[:, :8]
    assert not check_composites_aligned(data.images, data.masks, data.clouds, narrow,
                                        [r["tile"] for r in data.index]).passed
    composites.write(tmp_path, "A", dataclasses.replace(data, clouds=np.asarray(data.clouds)[:1]))
    with pytest.raises(CloudGANError, match=r"clouds\.npy: 1 tiles but index\.csv has 2 rows"):
        composites.read(tmp_path, "A")
    (composites.folder(tmp_path, "A") / "surfaces.npy").unlink()
    with pytest.raises(CloudGANError, match=r"surfaces\.npy: missing; materialize composites for A"):
        composites.read(tmp_path, "A")
    with pytest.raises(MissingInputError, match="materialize composites for B first"):
        composites.read(tmp_path, "B")


def test_a_summary_without_a_field_is_an_error(tmp_path):
    pool_of_two(tmp_path)
    composites_of(tmp_path, {"A": 1})
    path = tmp_path / "composites" / "A" / "composites.json"
    summary = json.loads(path.read_text())
    del summary["model_sha256"]
    path.write_text(json.dumps(summary))
    with pytest.raises(CloudGANError, match=r"composites\.json: unreadable \(KeyError: 'model_sha256'\)"):
        composites.read(tmp_path, "A")


def test_an_empty_partition_is_valid(tmp_path):
    pool_of_two(tmp_path)
    composites_of(tmp_path, {"A": 0})
    data = composites.read(tmp_path, "A")
    assert len(data.images) == 0 and data.summary.count == 0
    result = composites.build(tmp_path, "A")
    assert "valid result" in result.figures()["empty"] and result.preview() is None
