"""MLP generator and discriminator for toy data, as in the 2-D and 3-D mixture experiments of
Roth, Lucchi, Nowozin, Hofmann 2017 ("Stabilizing Training of GANs through Regularization"):
``depth`` hidden layers of ``hidden`` units with tanh (defaults: 2 layers of 128). The latent
size of G (``z_dim``, default 16) is fastreg's choice. PyTorch's default initialisation, or
:func:`truncated_normal_init_` (weights from a normal of std 0.1 truncated at two standard deviations, biases
zero: the ``tf.truncated_normal_initializer(stddev=0.1)`` of the authors' toy script).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .dcgan import _check_positive


def _mlp(d_in: int, d_out: int, hidden: int, depth: int) -> nn.Sequential:
    layers, width = [], d_in
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.Tanh()]
        width = hidden
    layers.append(nn.Linear(width, d_out))
    return nn.Sequential(*layers)


TOY_INIT_STD = 0.1  # Roth et al.'s toy script: truncated normal, stddev 0.1


def truncated_normal_init_(module: nn.Module, std: float = TOY_INIT_STD) -> nn.Module:
    """Every Linear layer's weight from N(0, std^2) truncated to [-2 std, 2 std] (TensorFlow's
    truncated_normal_initializer), its bias 0; in place, returns ``module``. Draws from the global RNG."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
            nn.init.zeros_(layer.bias)
    return module


class MLPGenerator(nn.Module):
    """z ``[N, z_dim]`` -> points ``[N, out_dim]`` (linear output)."""

    def __init__(self, z_dim: int = 16, out_dim: int = 2, hidden: int = 128, depth: int = 2):
        super().__init__()
        _check_positive("MLPGenerator", z_dim=z_dim, out_dim=out_dim, hidden=hidden, depth=depth)
        self.z_dim, self.out_dim = z_dim, out_dim
        self.net = _mlp(z_dim, out_dim, hidden, depth)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class MLPDiscriminator(nn.Module):
    """points ``[N, in_dim]`` -> logits ``[N]``."""

    def __init__(self, in_dim: int = 2, hidden: int = 128, depth: int = 2):
        super().__init__()
        _check_positive("MLPDiscriminator", in_dim=in_dim, hidden=hidden, depth=depth)
        self.in_dim = in_dim
        self.net = _mlp(in_dim, 1, hidden, depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).reshape(x.shape[0])
