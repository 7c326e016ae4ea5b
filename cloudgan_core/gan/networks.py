"""CycleGAN networks: the ResNet generator and the PatchGAN discriminator.

Written from Zhu et al. (2017), "Unpaired Image-to-Image Translation using Cycle-Consistent
Adversarial Networks" (appendix 7.2) and Johnson et al. (2016), with the module layout of the
reference PyTorch implementation, so that the state dictionaries match key for key:

Generator (``n_blocks`` residual blocks, ``ngf`` base width), as one ``nn.Sequential`` called
``model``::

    0  ReflectionPad2d(3)           1  Conv2d(in, ngf, 7)         2  InstanceNorm   3  ReLU
    4  Conv2d(ngf, 2ngf, 3, s2)     5  InstanceNorm               6  ReLU
    7  Conv2d(2ngf, 4ngf, 3, s2)    8  InstanceNorm               9  ReLU
    10 .. 9+n_blocks   ResnetBlock(4ngf)  (sub-module ``conv_block``: pad, conv, norm, relu,
                                           pad, conv, norm -> convolutions at 1 and 5)
    then ConvTranspose2d(4ngf, 2ngf, 3, s2), InstanceNorm, ReLU,
         ConvTranspose2d(2ngf, ngf, 3, s2), InstanceNorm, ReLU,
         ReflectionPad2d(3), Conv2d(ngf, out, 7), Tanh

For ``resnet_9blocks`` with ``ngf=64`` the keys are ``model.1``, ``model.4``, ``model.7``,
``model.10..18.conv_block.{1,5}``, ``model.19``, ``model.22``, ``model.26`` (weight and bias each:
48 tensors, 11,378,179 parameters). Instance normalisation has no affine parameters and no
running statistics, so every convolution carries a bias.
"""

from __future__ import annotations

import torch
from torch import nn


def _instance_norm(channels: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResnetBlock(nn.Module):
    """Residual block ``x + F(x)`` with two reflection-padded 3x3 convolutions.

    Parameters
    ----------
    dim
        Number of input (and output) channels.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, kernel_size=3, padding=0, bias=True),
            _instance_norm(dim),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, kernel_size=3, padding=0, bias=True),
            _instance_norm(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """ResNet-based CycleGAN generator (two stride-2 downsamplings, residual blocks, two upsamplings).

    Parameters
    ----------
    input_nc
        Channels of the input image.
    output_nc
        Channels of the output image (values in [-1, 1] after the final tanh).
    ngf
        Filters in the first convolution; the residual blocks use ``4 * ngf``.
    n_blocks
        Number of residual blocks (9 for the reference ``resnet_9blocks``).

    Notes
    -----
    Input height and width must be multiples of 4 for the output to have the input's size.
    """

    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 64, n_blocks: int = 9) -> None:
        super().__init__()
        if n_blocks < 0:
            raise ValueError(f"n_blocks must be >= 0, got {n_blocks}")
        if ngf < 1:
            raise ValueError(f"ngf must be >= 1, got {ngf}")
        self.input_nc, self.output_nc, self.ngf, self.n_blocks = input_nc, output_nc, ngf, n_blocks
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(input_nc, ngf, kernel_size=7, padding=0, bias=True),
            _instance_norm(ngf),
            nn.ReLU(True),
        ]
        width = ngf
        for _ in range(2):  # downsampling
            layers += [
                nn.Conv2d(width, width * 2, kernel_size=3, stride=2, padding=1, bias=True),
                _instance_norm(width * 2),
                nn.ReLU(True),
            ]
            width *= 2
        layers += [ResnetBlock(width) for _ in range(n_blocks)]
        for _ in range(2):  # upsampling
            layers += [
                nn.ConvTranspose2d(
                    width, width // 2, kernel_size=3, stride=2, padding=1, output_padding=1, bias=True
                ),
                _instance_norm(width // 2),
                nn.ReLU(True),
            ]
            width //= 2
        layers += [
            nn.ReflectionPad2d(3),
            nn.Conv2d(width, output_nc, kernel_size=7, padding=0),
            nn.Tanh(),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a batch ``(N, input_nc, H, W)`` in [-1, 1] to ``(N, output_nc, H, W)`` in [-1, 1]."""
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    """PatchGAN discriminator; with ``n_layers=3`` each output value sees a 70x70 input patch.

    Parameters
    ----------
    input_nc
        Channels of the input image.
    ndf
        Filters in the first convolution (doubling per layer, capped at ``8 * ndf``).
    n_layers
        Number of stride-2 convolutions after the first one, plus one (``3`` -> 70x70 patches).

    Notes
    -----
    4x4 convolutions, LeakyReLU(0.2), instance normalisation on every layer but the first and the
    last; the output is a map of raw (unbounded) scores, one per patch, as LSGAN expects.
    """

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        kw, pad = 4, 1
        layers: list[nn.Module] = [
            nn.Conv2d(input_nc, ndf, kernel_size=kw, stride=2, padding=pad),
            nn.LeakyReLU(0.2, True),
        ]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, kernel_size=kw, stride=2, padding=pad, bias=True),
                _instance_norm(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [
            nn.Conv2d(ndf * prev, ndf * mult, kernel_size=kw, stride=1, padding=pad, bias=True),
            _instance_norm(ndf * mult),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * mult, 1, kernel_size=kw, stride=1, padding=pad),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Score a batch ``(N, input_nc, H, W)``; returns ``(N, 1, H', W')`` patch scores."""
        return self.model(x)


def init_weights(net: nn.Module, gain: float = 0.02, generator: torch.Generator | None = None) -> nn.Module:
    """Initialise convolution weights from N(0, ``gain``) and biases to 0, in place (as the paper).

    Parameters
    ----------
    net
        Network to initialise.
    gain
        Standard deviation of the normal distribution.
    generator
        Optional random generator, for seeded initialisation independent of the global RNG.
    """
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                module.weight.normal_(0.0, gain, generator=generator)
                if module.bias is not None:
                    module.bias.zero_()
    return net


def count_parameters(net: nn.Module) -> int:
    """Number of parameters (elements) in ``net``."""
    return sum(p.numel() for p in net.parameters())
