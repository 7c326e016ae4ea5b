"""CycleGAN training, checkpoints after each epoch, resuming (cloudgan_core.gan.training)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from cloudgan_core.digests import file_digest
from cloudgan_core.gan import (
    TrainConfig,
    TrainingError,
    generate_clouds,
    load_generator,
    lr_factor,
    train_cyclegan,
)
from cloudgan_core.gan.training import ImagePool


def _data(seed: int = 0, n_a: int = 5, n_b: int = 4, size: int = 32):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    masks = np.stack([
        ((yy - rng.integers(8, 24)) ** 2 + (xx - rng.integers(8, 24)) ** 2 < rng.integers(4, 10) ** 2)
        for _ in range(max(n_a, n_b))
    ])
    # domain A: bright cloud over a dark, noisy background (not paired with masks_b)
    images = (rng.integers(0, 40, (n_a, size, size, 3)) + masks[:n_a, :, :, None] * 180).astype(np.uint8)
    return images, masks[:n_b].astype(np.uint8) * 255


def _config(**changes) -> TrainConfig:
    base = TrainConfig(
        epochs=1, epochs_decay=0, batch_size=2, ngf=8, ndf=8, n_blocks=2, pool_size=3,
        seed=7, device="cpu", max_steps_per_epoch=2, num_threads=1,
    )
    return dataclasses.replace(base, **changes)


def test_lr_schedule_is_constant_then_linear():
    assert [lr_factor(e, 2, 2) for e in range(4)] == pytest.approx([1, 1, 2 / 3, 1 / 3])
    assert [lr_factor(e, 0, 1) for e in range(1)] == pytest.approx([0.5])


@pytest.mark.slow  # trains twice (about 4 s)
def test_train_then_resume(tmp_path):
    images, masks = _data()
    lines: list[str] = []
    first = train_cyclegan(images, masks, tmp_path, _config(), log=lines.append,
                           data_description={"tiles": "synthetic test blobs"}, command="pytest")
    assert (first.start_epoch, first.epochs_done, len(first.history)) == (1, 1, 1)
    for name in ("G_A", "G_B", "D_A", "D_B"):
        assert (tmp_path / f"latest_net_{name}.pth").is_file()
    g_b = load_generator(first.generator_b)  # reference format, shape inferred from the file
    assert (g_b.ngf, g_b.n_blocks) == (8, 2)
    assert load_generator(first.generator_a).ngf == 8
    clouds = generate_clouds(g_b, masks).clouds
    assert clouds.shape == (4, 32, 32, 3)

    second = train_cyclegan(images, masks, tmp_path, _config(epochs=2), log=lines.append,
                            data_description={"tiles": "synthetic test blobs"}, command="pytest")
    assert (second.start_epoch, second.epochs_done) == (2, 2)
    assert any("resuming" in line and "after epoch 1" in line for line in lines)
    card = json.loads((tmp_path / "model_card.json").read_text())
    assert [row["epoch"] for row in card["history"]] == [1, 2]
    assert card["history"][0]["losses"] == first.history[0]["losses"]
    assert card["epochs_done"] == 2 and card["data"] == {"tiles": "synthetic test blobs"}
    assert card["files"]["G_B"]["sha256"] == file_digest(tmp_path / "latest_net_G_B.pth")
    assert card["device"] == "cpu" and card["config"]["epochs"] == 2
    markdown = (tmp_path / "model_card.md").read_text()
    assert "| 1 |" in markdown and "| 2 |" in markdown and "synthetic test blobs" in markdown
    assert all(np.isfinite(v) for row in card["history"] for v in row["losses"].values())

    # one uninterrupted run of two epochs gives the same networks, byte for byte
    straight = tmp_path / "straight"
    train_cyclegan(images, masks, straight, _config(epochs=2), log=lines.append)
    for name in ("G_A", "G_B", "D_A", "D_B"):
        assert file_digest(straight / f"latest_net_{name}.pth") == file_digest(tmp_path / f"latest_net_{name}.pth")

    # nothing left to do: no further epoch, files unchanged
    before = file_digest(tmp_path / "latest_net_G_B.pth")
    third = train_cyclegan(images, masks, tmp_path, _config(epochs=2), log=lines.append)
    assert third.epochs_done == 2 and third.start_epoch == 3
    assert file_digest(tmp_path / "latest_net_G_B.pth") == before


def test_training_changes_the_weights_and_depends_on_the_seed(tmp_path):
    images, masks = _data(1)
    a = train_cyclegan(images, masks, tmp_path / "a", _config(seed=1), log=lambda _: None)
    b = train_cyclegan(images, masks, tmp_path / "b", _config(seed=2), log=lambda _: None)
    assert file_digest(a.generator_b) != file_digest(b.generator_b)
    # the Adam steps moved the weights away from the seeded initialisation
    from cloudgan_core.gan import ResnetGenerator, init_weights

    start = init_weights(ResnetGenerator(ngf=8, n_blocks=2), generator=torch.Generator().manual_seed(1))
    trained = load_generator(a.generator_a)
    assert not torch.equal(start.state_dict()["model.1.weight"], trained.state_dict()["model.1.weight"])


def test_resume_with_another_architecture_is_refused(tmp_path):
    images, masks = _data()
    train_cyclegan(images, masks, tmp_path, _config(), log=lambda _: None)
    with pytest.raises(TrainingError, match="uses .*'ngf': 8.*asks for .*'ngf': 16"):
        train_cyclegan(images, masks, tmp_path, _config(epochs=2, ngf=16), log=lambda _: None)


def test_bad_inputs_are_clear_errors(tmp_path):
    images, masks = _data()
    with pytest.raises(TrainingError, match=r"images_a: expected a \(N, H, W, 3\) uint8"):
        train_cyclegan(images[..., 0], masks, tmp_path, _config())
    with pytest.raises(TrainingError, match="tile sizes differ"):
        train_cyclegan(images, masks[:, :16, :16], tmp_path, _config())
    with pytest.raises(TrainingError, match="batch_size must be >= 1"):
        train_cyclegan(images, masks, tmp_path, _config(batch_size=0))
    with pytest.raises(TrainingError, match="at least one tile"):
        train_cyclegan(images[:0], masks, tmp_path, _config())


def test_image_pool_fills_then_swaps():
    pool = ImagePool(2, np.random.default_rng(0))
    batch = torch.arange(2.0).reshape(2, 1, 1, 1)
    out = pool.query(batch)
    assert torch.equal(out, batch) and len(pool.images) == 2  # filling: stored and returned
    returned = torch.cat([pool.query(torch.full((1, 1, 1, 1), 10.0 + i)) for i in range(40)])
    values = set(returned.flatten().tolist())
    assert values & {0.0, 1.0} and values & {10.0 + i for i in range(40)}  # history and new both seen
    assert len(pool.images) == 2
    assert torch.equal(ImagePool(0, np.random.default_rng(0)).query(batch), batch)
