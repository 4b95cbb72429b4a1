"""DCGAN generator and discriminator (Radford, Metz, Chintala 2016, "Unsupervised Representation
Learning with Deep Convolutional Generative Adversarial Networks").

4x4 stride-2 (transposed) convolutions double (halve) the resolution between 4x4 and the image
size; G uses batch norm + ReLU and a tanh output, D LeakyReLU(0.2). D's normalization is a
choice (``norm``): batch norm as Radford et al. and Roth et al. 2017's code, layer norm as Gulrajani
et al. 2017 recommend for WGAN-GP critics, or none; the trainer takes the default from the
regularizer's paper (:data:`fastreg.regularizers.REGULARIZERS`); the network knows no regularizer. Weights
start from N(0, 0.02), the initialisation of Radford et al. that Roth et al. 2017 use too (:func:`dcgan_init_`).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

RESOLUTIONS = (8, 16, 32, 64)
D_NORMS = ("batch", "layer", "none")


def check_resolution(resolution: int, who: str, allowed=RESOLUTIONS) -> int:
    """``log2(resolution) - 2``, the number of 2x steps between 4x4 and the image; ValueError
    naming ``resolution`` unless it is one of ``allowed``."""
    if resolution not in allowed or isinstance(resolution, bool):
        raise ValueError(f"{who}: resolution must be one of {allowed}, got {resolution!r}")
    return int(math.log2(resolution)) - 2


def _check_positive(who: str, **values) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{who}: {name} must be a positive int, got {value!r}")


@torch.no_grad()
def dcgan_init_(module: nn.Module, std: float = 0.02) -> nn.Module:
    """Radford et al. 2016's initialisation, in place: conv and linear weights ~ N(0, std), batch-norm
    scales ~ N(1, std), every bias 0 (std = 0.02, as in Roth et al. 2017's DCGAN)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            m.weight.normal_(0.0, std)
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            m.weight.normal_(1.0, std)
            m.bias.zero_()
    return module


class DCGANGenerator(nn.Module):
    """z ``[N, z_dim]`` -> images ``[N, channels, resolution, resolution]`` in [-1, 1].

    ``z -> 4x4 x (width * 2^(k-1))``, then ``k`` 4x4 stride-2 transposed convs, each halving the
    channels, the last to ``channels`` with tanh; ``k = log2(resolution) - 2`` (Radford et al. 2016;
    width 64 and resolution 64 give their 64x64 generator).
    """

    def __init__(self, z_dim: int = 100, width: int = 64, resolution: int = 64, channels: int = 3):
        super().__init__()
        _check_positive("DCGANGenerator", z_dim=z_dim, width=width, channels=channels)
        k = check_resolution(resolution, "DCGANGenerator")
        self.z_dim, self.resolution, self.channels = z_dim, resolution, channels
        ch = width * 2 ** (k - 1)
        layers = [nn.ConvTranspose2d(z_dim, ch, 4, 1, 0, bias=False), nn.BatchNorm2d(ch), nn.ReLU(True)]
        for _ in range(k - 1):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU(True)]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        dcgan_init_(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.reshape(z.shape[0], self.z_dim, 1, 1))


class DCGANDiscriminator(nn.Module):
    """images ``[N, channels, resolution, resolution]`` -> logits ``[N]`` (no output nonlinearity).

    ``k`` 4x4 stride-2 convs from ``width`` channels, doubling, each followed by LeakyReLU(0.2)
    (and, after all but the first, the normalization ``norm``: ``"batch"`` (BatchNorm2d, Radford et
    al.), ``"layer"`` (GroupNorm with one group: every sample normalized over channels and space,
    Gulrajani et al. 2017's layer norm) or ``"none"``), then a 4x4 conv to one logit (Radford et al.
    2016). ``batch_norm=True`` is short for ``norm="batch"``.
    """

    def __init__(self, width: int = 64, resolution: int = 64, channels: int = 3, batch_norm: bool = False,
                 norm: str | None = None):
        super().__init__()
        _check_positive("DCGANDiscriminator", width=width, channels=channels)
        k = check_resolution(resolution, "DCGANDiscriminator")
        if norm is None:
            norm = "batch" if batch_norm else "none"
        elif batch_norm and norm != "batch":
            raise ValueError(f"DCGANDiscriminator: batch_norm=True contradicts norm={norm!r}")
        if norm not in D_NORMS:
            raise ValueError(f"DCGANDiscriminator: norm must be one of {D_NORMS}, got {norm!r}")
        self.resolution, self.channels, self.norm = resolution, channels, norm
        layers = [nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2)]
        ch = width
        for _ in range(k - 1):
            layers.append(nn.Conv2d(ch, 2 * ch, 4, 2, 1, bias=norm == "none"))  # a norm layer has its own shift
            if norm == "batch":
                layers.append(nn.BatchNorm2d(2 * ch))
            elif norm == "layer":
                layers.append(nn.GroupNorm(1, 2 * ch))
            layers.append(nn.LeakyReLU(0.2))
            ch *= 2
        layers.append(nn.Conv2d(ch, 1, 4, 1, 0))
        self.net = nn.Sequential(*layers)
        dcgan_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).reshape(x.shape[0])
