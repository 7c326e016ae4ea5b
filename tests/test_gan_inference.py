"""Batched inference, pre/post-processing and evaluation (cloudgan_core.gan.inference / evaluate)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cloudgan_core.gan import (
    InferenceError,
    ResnetGenerator,
    evaluate_generator,
    generate_clouds,
    init_weights,
    mask_figures,
    masks_to_input,
    output_to_uint8,
)
from cloudgan_core.quality import otsu_threshold
from cloudgan_core.settings import SettingError


def _generator(seed: int = 0) -> ResnetGenerator:
    net = ResnetGenerator(ngf=8, n_blocks=2)
    return init_weights(net, generator=torch.Generator().manual_seed(seed)).eval()


def _masks(n: int = 5, size: int = 32, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), dtype=np.uint8)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):  # one blob of cloud inside each tile, never all cloud or all clear
        y, x = rng.integers(size // 4, 3 * size // 4, 2)
        r = rng.integers(3, size // 4)
        masks[i] = ((yy - y) ** 2 + (xx - x) ** 2 < r**2) * 255
    return masks


def test_masks_to_input_accepts_bool_01_and_0255_alike():
    m255 = _masks(3, 16)
    x = masks_to_input(m255)
    assert x.shape == (3, 3, 16, 16) and x.dtype == torch.float32
    assert set(torch.unique(x).tolist()) == {-1.0, 1.0}
    assert torch.equal(x[:, 0], torch.from_numpy(m255 == 255).float() * 2 - 1)
    assert torch.equal(x[:, 0], x[:, 2])  # grey image repeated to three channels
    assert torch.equal(masks_to_input(m255 > 0), x)
    assert torch.equal(masks_to_input((m255 > 0).astype(np.uint8)), x)
    # a grey level keeps its value, as the reference's PNG loader + Normalize(.5, .5)
    grey = np.full((1, 4, 4), 51, dtype=np.uint8)
    assert torch.allclose(masks_to_input(grey), torch.full((1, 3, 4, 4), 51 / 255 * 2 - 1))


def test_output_to_uint8_rounds_and_clips():
    levels = torch.tensor([0.4, 0.6, 1.49, 1.51, 127.4, 127.6, 254.4, 254.6], dtype=torch.float64)
    t = (levels / 127.5 - 1).reshape(1, 1, 1, -1).expand(1, 3, 1, -1).float()
    out = output_to_uint8(t)
    assert out.shape == (1, 1, 8, 3) and out.dtype == np.uint8
    assert out[0, 0, :, 0].tolist() == [0, 1, 1, 2, 127, 128, 254, 255]
    clipped = output_to_uint8(torch.tensor([-1.3, 1.2, -1.0, 1.0]).reshape(1, 1, 1, 4).expand(1, 3, 1, 4))
    assert clipped[0, 0, :, 1].tolist() == [0, 255, 0, 255]


def test_generate_clouds_matches_the_network_and_is_deterministic():
    net = _generator()
    masks = _masks(5)
    result = generate_clouds(net, masks, batch_size=2)
    assert result.clouds.shape == (5, 32, 32, 3) and result.clouds.dtype == np.uint8
    assert result.device == "cpu" and result.precision == "fp32" and result.batch_size == 2
    assert result.seconds > 0 and result.tiles_per_second > 0
    with torch.no_grad():
        expected = output_to_uint8(net(masks_to_input(masks[3:4])))
    assert np.array_equal(result.clouds[3:4], expected)
    again = generate_clouds(net, masks, batch_size=2)
    assert again.clouds.tobytes() == result.clouds.tobytes()


def test_batching_gives_the_batch_one_result():
    net = _generator(3)
    masks = _masks(7)
    single = generate_clouds(net, masks, batch_size=1).clouds
    for batch in (3, 7, 16):
        batched = generate_clouds(net, masks, batch_size=batch).clouds
        diff = np.abs(batched.astype(np.int16) - single)
        # convolutions over a batch round differently (~1e-6); at most a rare one-level step
        assert diff.max() <= 1, batch
        assert np.count_nonzero(diff) <= diff.size // 1000, batch


class _OutOfMemoryAbove(nn.Module):
    """Wraps a generator; raises the CUDA OOM error for batches larger than ``limit``."""

    def __init__(self, net: nn.Module, limit: int) -> None:
        super().__init__()
        self.net, self.limit, self.sizes = net, limit, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(x.shape[0])
        if x.shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.net(x)


def test_out_of_memory_halves_the_batch_and_retries():
    net = _generator(4)
    masks = _masks(11)
    wrapped = _OutOfMemoryAbove(net, limit=3)
    result = generate_clouds(wrapped, masks, batch_size=8)
    assert result.batch_size == 2
    assert wrapped.sizes[:3] == [8, 4, 2]  # 8 and 4 failed, 2 fits
    assert max(s for s in wrapped.sizes if s <= 3) == 2 and sum(s for s in wrapped.sizes if s <= 3) == 11
    reference = generate_clouds(net, masks, batch_size=2).clouds
    assert np.array_equal(result.clouds, reference)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        generate_clouds(_OutOfMemoryAbove(net, limit=0), masks, batch_size=4)


def test_bf16_on_cpu_is_close_to_fp32_and_fp16_is_refused():
    net = _generator(5)
    masks = _masks(3)
    fp32 = generate_clouds(net, masks).clouds.astype(np.int16)
    bf16 = generate_clouds(net, masks, precision="bf16", num_threads=1)
    assert bf16.precision == "bf16"
    assert np.abs(bf16.clouds - fp32).mean() < 1.0
    with pytest.raises(Exception, match="fp16"):
        generate_clouds(net, masks, precision="fp16")


def test_bad_tile_sizes_and_shapes_are_clear_errors():
    net = _generator()
    with pytest.raises(InferenceError, match="30x32 is not a multiple of 4"):
        generate_clouds(net, np.zeros((2, 30, 32), np.uint8))
    with pytest.raises(InferenceError, match=r"expected an \(N, H, W\) array"):
        generate_clouds(net, np.zeros((32, 32), np.uint8))
    with pytest.raises(InferenceError, match="batch_size must be >= 1"):
        generate_clouds(net, np.zeros((1, 32, 32), np.uint8), batch_size=0)


def test_progress_is_reported_per_batch():
    calls = []
    generate_clouds(_generator(), _masks(5), batch_size=2, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(2, 5), (4, 5), (5, 5)]


class _MaskEcho(nn.Module):
    """A perfect 'generator' for the evaluation test: white where the mask is, black elsewhere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_evaluation_of_a_perfect_and_an_inverted_generator():
    masks = _masks(4)
    perfect = evaluate_generator(_MaskEcho(), masks)
    assert perfect.mean_brightness_cloud == 255.0 and perfect.mean_brightness_clear == 0.0
    assert perfect.iou == 1.0 and perfect.threshold_method == "otsu"
    assert perfect.cloud_fraction == pytest.approx(np.count_nonzero(masks) / masks.size)
    assert perfect.precision == perfect.recall == 1.0 and perfect.tiles == 4
    # the same figures from the images themselves (what the model recipe uses for its reference row)
    echo = np.repeat((masks.astype(bool) * 255).astype(np.uint8)[..., None], 3, axis=-1)
    assert mask_figures(echo, masks) == perfect

    class Inverted(nn.Module):
        def forward(self, x):
            return -x

    inverted = evaluate_generator(Inverted(), masks, threshold=100)
    assert inverted.brightness_contrast == -255.0 and inverted.iou == 0.0
    assert inverted.threshold_method == "fixed" and inverted.threshold == 100.0
    with pytest.raises(SettingError, match=r"threshold must be within \[0, 255\], got 300"):
        mask_figures(echo, masks, threshold=300)


def test_otsu_threshold_splits_two_groups():
    values = np.concatenate([np.full(500, 20), np.full(300, 200), np.arange(30, 40)]).astype(np.uint8)
    t = otsu_threshold(values)
    assert 39 <= t < 200
    assert ((values > t) == (values >= 200)).all()
    constant = np.full(10, 7, np.uint8)
    assert otsu_threshold(constant) == 7.0 and not (constant > otsu_threshold(constant)).any()
