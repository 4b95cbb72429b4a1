"""The f-divergences of f-GAN in fastreg's logit parametrization.

Source: Nowozin, Cseke, Tomioka 2016, "f-GAN: Training Generative Neural
Samplers using Variational Divergence Minimization" (Table 2), and Roth,
Lucchi, Nowozin, Hofmann 2017, "Stabilizing Training of GANs through
Regularization" (the weight of the regularizer). Table: docs/design.md section 4.

The discriminator outputs a logit ``v``; the variational function is
``T = g_f(v)`` and D maximizes ``E_P[g_f(v)] - E_Q[f*(g_f(v))]``. Every output
activation increases with ``v`` (larger logit = more real). Roth's regularizer
for divergence f is ``Omega_f = E_Q[w_f(v) * ||grad_x v||^2]`` with

    w_f(v) = f*''(g_f(v)) * g_f'(v)^2.

All forms use softplus/sigmoid so that no ``log(1 + exp(.))`` overflows.
Exponentials of large logits may overflow to inf; that is left visible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

Fn = Callable[[torch.Tensor], torch.Tensor]

LOG2 = math.log(2.0)


@dataclass(frozen=True)
class Divergence:
    """One row of the table: activation g_f, conjugate f*(g_f(v)), w_f and its derivatives."""

    name: str
    activation: Fn   # g_f(v)
    conjugate: Fn    # f*(g_f(v))
    weight: Fn       # w_f(v)
    weight_slope: Fn  # w_f'(v)
    weight_curvature: Fn  # w_f''(v), used by the double backward of the fused op


def _sigmoid(v: torch.Tensor) -> torch.Tensor:
    """sigma(v) as exp(-softplus(-v)): autograd's derivatives then keep the saturated tail
    (torch.sigmoid's, sigma (1 - sigma), cancels to 0 for large v)."""
    return torch.exp(-F.softplus(-v))


def _sigmoid_slope(v: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(v) * torch.sigmoid(-v)


def _sigmoid_curvature(v: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(v)
    return s * torch.sigmoid(-v) * (1 - 2 * s)


def _exp_shift(v: torch.Tensor) -> torch.Tensor:
    return torch.exp(v - 1)


def _ones(v: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(v)


def _zeros(v: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(v)


DIVERGENCES: dict[str, Divergence] = {
    "kl": Divergence("kl", lambda v: v, _exp_shift, _exp_shift, _exp_shift, _exp_shift),
    "reverse_kl": Divergence("reverse_kl", lambda v: -torch.exp(-v), lambda v: v - 1, _ones, _zeros, _zeros),
    "pearson": Divergence("pearson", lambda v: v, lambda v: v + v * v / 4, lambda v: 0.5 * torch.ones_like(v),
                          _zeros, _zeros),
    "neyman": Divergence("neyman", lambda v: 1 - torch.exp(-v), lambda v: 2 - 2 * torch.exp(-v / 2),
                         lambda v: 0.5 * torch.exp(-v / 2), lambda v: -0.25 * torch.exp(-v / 2),
                         lambda v: 0.125 * torch.exp(-v / 2)),
    "squared_hellinger": Divergence("squared_hellinger", lambda v: 1 - torch.exp(-v), lambda v: torch.exp(v) - 1,
                                    lambda v: 2 * torch.exp(v), lambda v: 2 * torch.exp(v),
                                    lambda v: 2 * torch.exp(v)),
    "js": Divergence("js", lambda v: LOG2 - F.softplus(-v), lambda v: F.softplus(v) - LOG2, _sigmoid,
                     _sigmoid_slope, _sigmoid_curvature),
    "gan": Divergence("gan", lambda v: -F.softplus(-v), F.softplus, _sigmoid, _sigmoid_slope,
                      _sigmoid_curvature),
}


def get_divergence(name: str) -> Divergence:
    """The divergence called ``name``; raises ValueError naming the known ones."""
    try:
        return DIVERGENCES[name]
    except KeyError:
        known = ", ".join(DIVERGENCES)
        raise ValueError(f"unknown divergence {name!r}; expected one of: {known}") from None
