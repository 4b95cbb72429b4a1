"""The lens of Tempered Adversarial Networks (Sajjadi, Parascandolo, Mehrjou, Schölkopf 2018).

D sees ``L(x_r)`` instead of ``x_r``. The lens is fully convolutional: a 3x3 conv into ``width``
channels, ``blocks`` (8) residual blocks of two 3x3 stride-1 convs, a 3x3 conv back to the image
channels, and a global skip from input to output, ``L(x) = x + f(x)``. The last conv starts at
zero, so the lens is exactly the identity map at initialisation and learns its distortion from
there (the lens loss of docs/design.md section 5 pulls it back to the identity as lambda_t falls to 0).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .dcgan import _check_positive


class _ResidualBlock(nn.Module):
    """x + conv3x3(ReLU(conv3x3(x))), then ReLU."""

    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x):
        return F.relu(x + self.conv2(F.relu(self.conv1(x))))


class Lens(nn.Module):
    """images ``[N, channels, H, W]`` -> lensed images of the same shape (any H, W)."""

    def __init__(self, channels: int = 3, width: int = 64, blocks: int = 8):
        super().__init__()
        _check_positive("Lens", channels=channels, width=width, blocks=blocks)
        self.inp = nn.Conv2d(channels, width, 3, padding=1)
        self.blocks = nn.Sequential(*[_ResidualBlock(width) for _ in range(blocks)])
        self.out = nn.Conv2d(width, channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.out(self.blocks(F.relu(self.inp(x))))
