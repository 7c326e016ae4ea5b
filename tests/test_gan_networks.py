"""Networks and reference-format checkpoints (cloudgan_core.gan.networks / checkpoint / devices)."""

from __future__ import annotations

import pytest
import torch

from cloudgan_core.digests import file_digest
from cloudgan_core.errors import CloudGANError
from cloudgan_core.gan import (
    CheckpointError,
    DeviceError,
    NLayerDiscriminator,
    ResnetGenerator,
    count_parameters,
    init_weights,
    load_generator,
    resolve_device,
    resolve_precision,
    save_generator,
)


def _reference_keys(n_blocks: int) -> list[str]:
    """Key list of the reference resnet generator, written out from its layer positions."""
    positions = [1, 4, 7]
    keys = [f"model.{i}.{p}" for i in positions for p in ("weight", "bias")]
    for block in range(10, 10 + n_blocks):
        keys += [f"model.{block}.conv_block.{c}.{p}" for c in (1, 5) for p in ("weight", "bias")]
    tail = 10 + n_blocks
    keys += [f"model.{i}.{p}" for i in (tail, tail + 3, tail + 7) for p in ("weight", "bias")]
    return keys


def _small(seed: int = 0, ngf: int = 8, n_blocks: int = 2) -> ResnetGenerator:
    net = ResnetGenerator(ngf=ngf, n_blocks=n_blocks)
    init_weights(net, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():  # non-zero biases, so a bias mix-up would show
        for name, p in net.named_parameters():
            if name.endswith("bias"):
                p.uniform_(-0.1, 0.1, generator=torch.Generator().manual_seed(seed + len(name)))
    return net.eval()


def _input(n: int = 2, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(5)) * 2 - 1


def test_resnet_9blocks_matches_reference_keys_and_parameter_count():
    net = ResnetGenerator(3, 3, ngf=64, n_blocks=9)
    state = net.state_dict()
    assert list(state) == _reference_keys(9)
    assert len(state) == 48
    assert state["model.1.weight"].shape == (64, 3, 7, 7)
    assert state["model.19.weight"].shape == (256, 128, 3, 3)  # ConvTranspose: (in, out, k, k)
    assert state["model.26.weight"].shape == (3, 64, 7, 7)
    assert count_parameters(net) == 11_378_179
    norms = [m for m in net.modules() if isinstance(m, torch.nn.InstanceNorm2d)]
    assert norms and all(not m.affine and not m.track_running_stats for m in norms)


def test_small_generator_layout_and_shapes():
    net = _small(n_blocks=2)
    assert list(net.state_dict()) == _reference_keys(2)
    out = net(_input(2, 32))
    assert out.shape == (2, 3, 32, 32)
    assert out.abs().max() <= 1.0


def test_patchgan_discriminator_reference_layout():
    net = NLayerDiscriminator(3, ndf=64, n_layers=3)
    assert [k for k in net.state_dict() if k.endswith("weight")] == [
        f"model.{i}.weight" for i in (0, 2, 5, 8, 11)
    ]
    assert count_parameters(net) == 2_764_737
    assert net(torch.zeros(1, 3, 256, 256)).shape == (1, 1, 30, 30)  # 70x70 patches


def test_saved_checkpoint_loads_with_identical_outputs(tmp_path):
    net = _small(seed=1, ngf=8, n_blocks=3)
    path = save_generator(net, tmp_path / "latest_net_G_B.pth")
    loaded = load_generator(path)
    assert (loaded.ngf, loaded.n_blocks) == (8, 3)
    assert not loaded.training
    x = _input()
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
    # the reference format: a plain dict of CPU tensors with the generator's keys
    raw = torch.load(path, weights_only=True)
    assert type(raw) is dict and list(raw) == _reference_keys(3)
    assert all(t.device.type == "cpu" for t in raw.values())
    # same weights -> same bytes, whatever temporary name the atomic write used
    again = save_generator(net, tmp_path / "other.pth")
    assert file_digest(again) == file_digest(path)


def test_module_prefix_and_running_stats_are_handled(tmp_path):
    net = _small(seed=2)
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    for index, width in ((2, 8), (5, 16), (8, 32)):  # norm layers of a checkpoint with running stats
        state[f"module.model.{index}.running_mean"] = torch.zeros(width)
        state[f"module.model.{index}.running_var"] = torch.ones(width)
        state[f"module.model.{index}.num_batches_tracked"] = torch.tensor(0)
    path = tmp_path / "old.pth"
    torch.save(state, path)
    loaded = load_generator(path, ngf=8, n_blocks=2)
    x = _input()
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))


def test_truncated_file_is_a_checkpoint_error(tmp_path):
    path = save_generator(_small(), tmp_path / "g.pth")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as info:
        load_generator(path)
    message = str(info.value)
    assert str(path) in message and "truncated" in message and "expected" in message
    assert isinstance(info.value, CloudGANError)


def test_random_bytes_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "noise.pth"
    path.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_generator(path)


def test_missing_file_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_generator(tmp_path / "absent.pth")


def test_discriminator_checkpoint_is_rejected(tmp_path):
    path = tmp_path / "latest_net_D_A.pth"
    torch.save(NLayerDiscriminator(ndf=8).state_dict(), path)
    with pytest.raises(CheckpointError) as info:
        load_generator(path)
    assert str(path) in str(info.value) and "not a ResNet generator" in str(info.value)


def test_generator_with_other_channel_layout_is_rejected(tmp_path):
    state = _small().state_dict()
    state["model.4.weight"] = torch.zeros(16, 7, 3, 3)  # wrong input width for the first downsampling
    path = tmp_path / "odd.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="does not fit a ResNet generator with ngf=8, n_blocks=2"):
        load_generator(path)


def test_wrong_requested_size_and_non_dict_are_rejected(tmp_path):
    path = save_generator(_small(), tmp_path / "g.pth")
    with pytest.raises(CheckpointError, match="n_blocks=2, but n_blocks=9 was asked for"):
        load_generator(path, n_blocks=9)
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(CheckpointError, match="not a state dict"):
        load_generator(listed)


class _Payload:
    def __reduce__(self):
        return (print, ("code ran while loading",))


def test_pickled_code_is_not_run(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"model.1.weight": _Payload()}, path)
    with pytest.raises(CheckpointError):
        load_generator(path)
    assert "code ran" not in capsys.readouterr().out


def test_resolve_device_and_precision():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeviceError, match="expected 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no usable CUDA GPU"):
            resolve_device("cuda:0")
    assert resolve_precision("fp32", "cpu") is torch.float32
    assert resolve_precision("bf16", "cpu") is torch.bfloat16
    with pytest.raises(DeviceError, match="fp16.*not supported on the CPU"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(DeviceError, match="expected one of fp32, bf16, fp16"):
        resolve_precision("int8", "cpu")
