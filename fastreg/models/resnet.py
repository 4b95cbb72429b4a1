"""ResNet generator and discriminator of the WGAN-GP experiments (Gulrajani, Ahmed, Arjovsky,
Dumoulin, Courville 2017, "Improved Training of Wasserstein GANs"), which Roth, Lucchi, Nowozin,
Hofmann 2017 reuse for their ResNet runs.

- 32x32 (CIFAR-10 in Gulrajani et al.): G: z -> 4x4 -> three upsampling residual blocks at
  constant width -> BN, ReLU, 3x3 conv, tanh. D: an "optimized" first block and a second block
  that each halve the resolution, two blocks at 8x8, ReLU, mean over space, linear.
- 64x64: G widths 8C, 8C, 4C, 2C, C over four upsampling blocks; D a 3x3 conv then four
  downsampling blocks C -> 2C -> 4C -> 8C -> 8C to 4x4, flattened into a linear layer.

Other powers of two from 8 to 64 are accepted (below 64 the 32x32 layout with fewer blocks), so
tests can run small models. No batch norm in D. Residual blocks: pre-activation, 3x3 convs,
nearest-neighbour upsampling and average-pool downsampling, 1x1 conv shortcuts where shapes change.
PyTorch's default initialisation.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .dcgan import _check_positive, check_resolution


class _UpBlock(nn.Module):
    """BN, ReLU, 2x upsample, 3x3 conv, BN, ReLU, 3x3 conv; shortcut 2x upsample + 1x1 conv."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(c_in), nn.BatchNorm2d(c_out)
        self.conv1, self.conv2 = nn.Conv2d(c_in, c_out, 3, padding=1), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x):
        h = F.interpolate(F.relu(self.bn1(x)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h))))
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


class _DownBlock(nn.Module):
    """ReLU, 3x3 conv, ReLU, 3x3 conv, (2x avg pool); shortcut 1x1 conv (+ pool) where shapes change.

    ``first=True`` is the "optimized" input block: no leading ReLU, and the shortcut pools first.
    """

    def __init__(self, c_in: int, c_out: int, down: bool, first: bool = False):
        super().__init__()
        self.down, self.first = down, first
        self.conv1, self.conv2 = nn.Conv2d(c_in, c_out, 3, padding=1), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1) if (down or c_in != c_out) else None

    def _pool(self, x):
        return F.avg_pool2d(x, 2) if self.down else x

    def forward(self, x):
        h = self.conv1(x if self.first else F.relu(x))
        h = self._pool(self.conv2(F.relu(h)))
        if self.shortcut is None:
            return h + x
        skip = self.shortcut(self._pool(x)) if self.first else self._pool(self.shortcut(x))
        return h + skip


def _pyramid(resolution: int) -> bool:
    return resolution == 64


class ResNetGenerator(nn.Module):
    """z ``[N, z_dim]`` -> images ``[N, channels, resolution, resolution]`` in [-1, 1]
    (Gulrajani et al. 2017's ResNet generator; defaults: their 32x32 model, z_dim 128, width 128)."""

    def __init__(self, z_dim: int = 128, width: int = 128, resolution: int = 32, channels: int = 3):
        super().__init__()
        _check_positive("ResNetGenerator", z_dim=z_dim, width=width, channels=channels)
        k = check_resolution(resolution, "ResNetGenerator")
        self.z_dim, self.resolution, self.channels = z_dim, resolution, channels
        widths = [width * min(8, 2 ** (k - i)) if _pyramid(resolution) else width for i in range(k + 1)]
        self.linear = nn.Linear(z_dim, widths[0] * 16)
        self.blocks = nn.Sequential(*[_UpBlock(widths[i], widths[i + 1]) for i in range(k)])
        self.bn = nn.BatchNorm2d(widths[-1])
        self.out = nn.Conv2d(widths[-1], channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.linear(z.reshape(z.shape[0], self.z_dim)).reshape(z.shape[0], -1, 4, 4)
        return torch.tanh(self.out(F.relu(self.bn(self.blocks(h)))))


class ResNetDiscriminator(nn.Module):
    """images ``[N, channels, resolution, resolution]`` -> logits ``[N]``
    (Gulrajani et al. 2017's ResNet critic; defaults: their 32x32 model, width 128)."""

    def __init__(self, width: int = 128, resolution: int = 32, channels: int = 3):
        super().__init__()
        _check_positive("ResNetDiscriminator", width=width, channels=channels)
        k = check_resolution(resolution, "ResNetDiscriminator")
        self.resolution, self.channels = resolution, channels
        self.pyramid = _pyramid(resolution)
        if self.pyramid:
            widths = [width] + [width * min(8, 2 ** (i + 1)) for i in range(k)]
            self.stem = nn.Conv2d(channels, width, 3, padding=1)
            blocks = [_DownBlock(widths[i], widths[i + 1], down=True) for i in range(k)]
            self.linear = nn.Linear(widths[-1] * 16, 1)
        else:
            downs = max(1, k - 1)  # down to 8x8 (4x4 for 8x8 images), then two blocks at that size
            self.stem = None
            blocks = [_DownBlock(channels, width, down=True, first=True)]
            blocks += [_DownBlock(width, width, down=True) for _ in range(downs - 1)]
            blocks += [_DownBlock(width, width, down=False) for _ in range(2)]
            self.linear = nn.Linear(width, 1)
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.stem(x) if self.pyramid else x)
        h = F.relu(h)
        h = h.flatten(1) if self.pyramid else h.mean(dim=(2, 3))
        return self.linear(h).reshape(x.shape[0])
