"""The synthetic_clouds stage called directly with a tiny generator: cover range, layout, read checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from cloudgan_core.atomic import MissingInputError, save_npy
from cloudgan_core.digests import file_digest
from cloudgan_core.errors import CloudGANError
from cloudgan_core.gan import load_generator
from cloudgan_core.stages import synthetic_clouds
from tests.dagster_helpers import tiny_generator
from tests.stage_helpers import SIZE, write_sorted


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_generator(tmp_path_factory.mktemp("model") / "latest_net_G_B.pth")


def _masks_with_covers(rows: list[int]) -> np.ndarray:
    """One 16 x 16 mask per entry with that many full rows cloudy (cover = rows / 16)."""
    masks = np.zeros((len(rows), SIZE, SIZE), np.uint8)
    for i, r in enumerate(rows):
        masks[i, :r] = 1
    return masks


def test_clouds_for_the_masks_in_the_cover_range(tmp_path, checkpoint):
    # covers 0, 6.25, 12.5, 50, 93.75, 100 %: (10, 95] keeps 12.5, 50 and 93.75
    write_sorted(tmp_path, "P", [0.1], gan_masks=_masks_with_covers([0, 1, 2, 8, 15, 16]))
    result = synthetic_clouds.build(tmp_path, "P", model=load_generator(checkpoint), model_name=checkpoint.name,
                                    model_sha256=file_digest(checkpoint), device="cpu", batch_size=2)
    data = synthetic_clouds.read(tmp_path, "P")
    assert data.clouds.shape == (3, SIZE, SIZE, 3) and data.clouds.dtype == np.uint8
    assert [round(100 * r["cloud_fraction"], 4) for r in data.index] == [12.5, 50.0, 93.75]
    np.testing.assert_array_equal(data.masks, _masks_with_covers([2, 8, 15]))
    assert data.model_sha256 == file_digest(checkpoint) and data.model == "latest_net_G_B.pth" and data.seed is None
    f = result.figures()
    assert f["tiles"] == 3 and f["cover_range"] == "(10, 95] %" and f["device"] == "cpu" and f["batch_size"] == 2
    assert f["tiles_per_second"] > 0 and result.notes == ()
    saved = json.loads((tmp_path / "synthetic_clouds" / "P" / "clouds.json").read_text())
    assert saved == {"generator": "gan", "model": "latest_net_G_B.pth", "model_sha256": file_digest(checkpoint),
                     "tiles": 3, "cover_range": "(10, 95] %", "top_height_km": 2.0, "mean_tau": f["mean_tau"],
                     "gan_antialias": True, "edge_width": 8.0}  # no timings, no device: the same bytes on every executor
    assert result.preview().caption == "mask | synthetic cloud (gan)"
    assert np.array_equal(data.tau > 0, data.masks == 1) and f["mean_tau"] > 0
    wide = synthetic_clouds.build(tmp_path, "P", synthetic_clouds.SyntheticCloudsConfig(min_cover=0, max_cover=100),
                                  model=load_generator(checkpoint), model_sha256="x", device="cpu")
    assert wide.tiles == 6  # [0, 100]: from 0 the range holds 0 too


def test_no_mask_in_range_writes_an_empty_partition_with_a_note(tmp_path, checkpoint):
    write_sorted(tmp_path, "P", [0.1], gan_masks=_masks_with_covers([0, 16]))
    result = synthetic_clouds.build(tmp_path, "P", model=load_generator(checkpoint), model_sha256="x", device="cpu")
    assert result.tiles == 0 and result.preview() is None and "(10, 95] %" in result.notes[0]
    assert synthetic_clouds.read(tmp_path, "P").clouds.shape == (0, SIZE, SIZE, 3)


def test_read_checks_the_folder(tmp_path, checkpoint):
    with pytest.raises(MissingInputError, match="materialize synthetic_clouds for P first"):
        synthetic_clouds.read(tmp_path, "P")
    with pytest.raises(MissingInputError, match="materialize sorted_tiles for P first"):
        synthetic_clouds.build(tmp_path, "P", model=None, model_sha256="x")
    write_sorted(tmp_path, "P", [0.1], gan_masks=_masks_with_covers([4, 8]))
    synthetic_clouds.build(tmp_path, "P", model=load_generator(checkpoint), model_sha256="x", device="cpu")
    folder = tmp_path / "synthetic_clouds" / "P"
    masks = np.load(folder / "masks.npy")
    save_npy(folder / "masks.npy", masks * 255)
    with pytest.raises(CloudGANError, match=r"masks\.npy: mask values must be 0 or 1"):
        synthetic_clouds.read(tmp_path, "P")
    save_npy(folder / "masks.npy", masks[:1])
    with pytest.raises(CloudGANError, match=r"masks\.npy: shape \(1, 16, 16\) does not match"):
        synthetic_clouds.read(tmp_path, "P")
    save_npy(folder / "masks.npy", masks)
    tau = np.load(folder / "tau.npy")
    save_npy(folder / "tau.npy", np.where(masks == 1, 0.0, tau).astype(np.float32))
    with pytest.raises(CloudGANError, match=r"tau\.npy: tau must be finite, > 0 inside the mask and 0 outside"):
        synthetic_clouds.read(tmp_path, "P")
    save_npy(folder / "tau.npy", tau)
    (folder / "clouds.json").write_text(json.dumps({"model": "m"}))
    with pytest.raises(CloudGANError, match="no model_sha256"):
        synthetic_clouds.read(tmp_path, "P")
    (folder / "index.csv").unlink()
    with pytest.raises(CloudGANError, match=r"index\.csv: missing; materialize synthetic_clouds for P again"):
        synthetic_clouds.read(tmp_path, "P")


def test_config_is_a_cover_range_in_percent():
    assert synthetic_clouds.SyntheticCloudsConfig().cover.label == "(10, 95] %"
    for values in ({"min_cover": 50.0, "max_cover": 50.0}, {"max_cover": 150.0}, {"min_cover": -1.0}):
        with pytest.raises(ValidationError, match="0 <= min_cover < max_cover <= 100"):
            synthetic_clouds.SyntheticCloudsConfig(**values)
