"""The train_generator stage's data assembly and config, without training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from cloudgan_core.atomic import MissingInputError
from cloudgan_core.cover import CoverRange
from cloudgan_core.gan.training import TrainingError
from cloudgan_core.stages import train_generator
from cloudgan_core.stages.train_generator import TrainGeneratorConfig, collect_training_tiles
from tests.stage_helpers import SIZE, write_sorted

KEY = "S3A_SL_1_RBT____20240602T100000_20240602T100300_20240602T120000_0179_101_001_1803_PS1_O_NT_004"


def _rows(rows: list[int]) -> np.ndarray:
    masks = np.zeros((len(rows), SIZE, SIZE), np.uint8)
    for i, r in enumerate(rows):
        masks[i, :r] = 1
    return masks


def test_collect_keeps_tiles_in_the_cover_range_crops_and_samples(tmp_path):
    write_sorted(tmp_path, "A", [0.1], gan_masks=_rows([4, 8, 16]))  # 25, 50, 100 %
    write_sorted(tmp_path, "B", [0.1], gan_masks=_rows([2]))  # 12.5 %
    got = collect_training_tiles(tmp_path, ["A", "B"])
    assert got.masks.shape == (3, SIZE, SIZE) and got.images.shape == (3, SIZE, SIZE, 3)
    assert [float(m.mean()) for m in got.masks] == [0.25, 0.5, 0.125] and got.products == ("A", "B")
    assert got.description() == {"products": ["A", "B"], "tiles": 3, "tile_size": SIZE, "crop": None,
                                 "cover_range_percent": [10.0, 95.0], "max_land_fraction": 1.0}
    np.testing.assert_array_equal(got.images[0][got.masks[0] == 1], 220)  # the false colour behind the mask
    # 8-px crops: each 16-px tile gives 4; with 4 of 16 rows cloudy the top crops are 100 %, the bottom 0 %
    crops = collect_training_tiles(tmp_path, ["A"], crop=8, cover=CoverRange(0, 100))
    assert crops.masks.shape == (12, 8, 8) and crops.crop == 8
    sample = collect_training_tiles(tmp_path, ["A", "B"], max_tiles=2, seed=1)
    assert len(sample.masks) == 2
    assert np.array_equal(sample.masks, collect_training_tiles(tmp_path, ["A", "B"], max_tiles=2, seed=1).masks)


def test_collect_without_tiles_or_inputs_is_a_clear_error(tmp_path):
    with pytest.raises(MissingInputError, match="materialize sorted_tiles for A first"):
        collect_training_tiles(tmp_path, ["A"])
    write_sorted(tmp_path, "A", [0.1], gan_masks=_rows([4]))
    with pytest.raises(TrainingError, match="no training tiles"):
        collect_training_tiles(tmp_path, ["A"], max_land_fraction=-0.5)
    with pytest.raises(TrainingError, match="no training tiles"):
        collect_training_tiles(tmp_path, ["A"], cover=CoverRange(50, 95))


def test_config_checks_its_settings():
    assert TrainGeneratorConfig(partitions=[KEY]).partitions == [KEY]
    for values, text in (({"partitions": ["../../etc"]}, "not an SL_1_RBT product name"),
                         ({"crop": 30}, "tile_size must be a positive multiple of 4"),
                         ({"epochs": 0, "epochs_decay": 0}, "epochs + epochs_decay must be >= 1"),
                         ({"ngf": 0}, "ngf must be an integer >= 1"),
                         ({"max_land_fraction": 1.5}, "max_land_fraction must be within [0, 1]"),
                         ({"min_cover": 95, "max_cover": 10}, "0 <= min_cover < max_cover <= 100")):
        with pytest.raises(ValidationError) as err:
            TrainGeneratorConfig(**values)
        assert text in str(err.value), values
    assert train_generator.folder(Path("/r")) == Path("/r/train_generator")
