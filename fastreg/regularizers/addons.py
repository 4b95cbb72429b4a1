r"""The regularizer add-ons that are not gradient penalties: instance noise and WGAN's weight clipping.

- :func:`instance_noise`: Arjovsky & Bottou 2017's Gaussian instance noise (the fused op
  :func:`fastreg.ops.gaussian_noise`).
- :func:`clip_weights_`: WGAN weight clipping (Arjovsky, Chintala, Bottou 2017).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..ops.random_ops import gaussian_noise

WGAN_CLIP = 0.01  # weight bound of Arjovsky et al. 2017


def instance_noise(x: torch.Tensor, sigma, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Gaussian instance noise :math:`x + \sigma\,\xi`, :math:`\xi \sim N(0, I)` (Arjovsky & Bottou 2017,
    "Towards Principled Methods for Training GANs": convolve both densities with a Gaussian).

    Apply it to real *and* fake inputs of D; the gradient w.r.t. ``x`` is the identity, so G's
    gradient flows through the noisy fake. ``sigma`` is a float or a ``[B]`` tensor (one per
    sample). A float ``sigma == 0`` returns ``x`` itself and draws nothing (the end of an
    annealing schedule). Otherwise this is :func:`fastreg.ops.gaussian_noise` (in-kernel Philox).
    """
    if not isinstance(sigma, torch.Tensor) and sigma == 0:
        return x
    return gaussian_noise(x, sigma, generator)


@torch.no_grad()
def clip_weights_(D: nn.Module, bound: float = WGAN_CLIP) -> None:
    """Clamp every parameter of ``D`` to ``[-bound, bound]`` in place, after each D step
    (Arjovsky, Chintala, Bottou 2017, "Wasserstein GAN"; bound 0.01)."""
    if not bound > 0:
        raise ValueError(f"clip_weights_: bound must be > 0, got {bound}")
    for p in D.parameters():
        p.clamp_(-bound, bound)
