"""synthetic_clouds and train_generator as real Dagster runs (tiny networks, 64-px tiles)."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pytest
import torch

from cloudgan_assets.assets import clouds, ingest, scenes, tiles
from cloudgan_assets.partitions import products_partitions
from cloudgan_assets.resources import GeneratorModel, TorchDevice
from cloudgan_core.digests import file_digest
from cloudgan_core.stages import sorted_tiles
from cloudgan_core.stages import synthetic_clouds as synthetic_clouds_stage
from tests.dagster_helpers import (
    SMALL_RUN_CONFIG,
    make_inbox,
    resources_for,
    tiny_generator,
)

#: real Dagster runs of the generator assets
pytestmark = pytest.mark.slow

ASSETS = [*dg.load_assets_from_modules([ingest, scenes, tiles, clouds])]
CHAIN = ["products", "masks", "false_color", "tiles", "sorted_tiles"]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return tiny_generator(tmp_path_factory.mktemp("model") / "latest_net_G_B.pth")


@pytest.fixture
def chain(tmp_path):
    keys = make_inbox(tmp_path / "inbox", seeds=(41,))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(products_partitions.name, keys)
        res = resources_for(tmp_path)
        assert dg.materialize(ASSETS, selection=CHAIN, partition_key=keys[0], instance=instance, resources=res,
                              run_config=SMALL_RUN_CONFIG).success
        yield tmp_path, keys[0], instance, res


def test_synthetic_clouds_aligned_with_masks_and_reports_the_model(chain, tiny_checkpoint):
    tmp_path, key, instance, res = chain
    res = {**res, "torch_device": TorchDevice(device="cpu", batch_size=3, precision="bf16", num_threads=1),
           "generator": GeneratorModel(checkpoint=str(tiny_checkpoint))}
    result = dg.materialize(ASSETS, selection=["synthetic_clouds"], partition_key=key, instance=instance,
                            resources=res)
    assert result.success
    md = result.asset_materializations_for_node("synthetic_clouds")[0].metadata
    made = synthetic_clouds_stage.read(tmp_path / "storage", key)
    clouds_arr, masks, index = made.clouds, made.masks, made.index
    sorted_masks = sorted_tiles.read(tmp_path / "storage", key).gan_input.masks
    assert len(clouds_arr) == len(masks) == len(index) == md["tiles"].value > 0
    assert clouds_arr.shape == (*masks.shape, 3) and clouds_arr.dtype == np.uint8
    assert all(10 < 100 * r["cloud_fraction"] <= 95 for r in index)
    assert np.isin(masks, sorted_masks).all() and masks.shape[1:] == (64, 64)
    assert md["model_sha256"].value == file_digest(tiny_checkpoint) == made.model_sha256
    assert md["device"].value == "cpu" and md["precision"].value == "bf16"
    assert md["tiles_per_second"].value > 0
    assert "data:image/png;base64," in md["preview"].value


def test_cuda_asked_on_a_cpu_machine_is_a_clear_error(chain, tiny_checkpoint):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    tmp_path, key, instance, res = chain
    res = {**res, "torch_device": TorchDevice(device="cuda"), "generator": GeneratorModel(checkpoint=str(tiny_checkpoint))}
    result = dg.materialize(ASSETS, selection=["synthetic_clouds"], partition_key=key, instance=instance,
                            resources=res, raise_on_error=False)
    assert not result.success
    text = "\n".join(str(e.dagster_event.event_specific_data) for e in instance.all_logs(result.run_id)
                     if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert "CUDA" in text


def test_train_generator_trains_and_resumes(chain):
    tmp_path, key, instance, res = chain
    res = {**res, "torch_device": TorchDevice(device="cpu", num_threads=1)}
    cfg = {"ngf": 4, "ndf": 4, "n_blocks": 1, "epochs": 1, "epochs_decay": 0, "max_steps_per_epoch": 2,
           "max_land_fraction": 1.0, "crop": 32}
    run_config = {"ops": {"train_generator": {"config": cfg}}}
    first = dg.materialize(ASSETS, selection=["train_generator"], instance=instance, resources=res, run_config=run_config)
    md = first.asset_materializations_for_node("train_generator")[0].metadata
    assert md["epochs_done"].value == 1 and md["start_epoch"].value == 1
    out = tmp_path / "storage" / "train_generator"
    assert (out / "latest_net_G_A.pth").is_file() and (out / "latest_net_G_B.pth").is_file()
    run_config["ops"]["train_generator"]["config"] = {**cfg, "epochs": 2}
    second = dg.materialize(ASSETS, selection=["train_generator"], instance=instance, resources=res,
                            run_config=run_config)
    md2 = second.asset_materializations_for_node("train_generator")[0].metadata
    assert md2["start_epoch"].value == 2 and md2["epochs_done"].value == 2
    assert "--select train_generator" in (out / "model_card.md").read_text()
