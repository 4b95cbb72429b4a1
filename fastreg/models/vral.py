"""VRAL meta-discriminators (Grewal, Hjelm, Bengio 2018, "Variance Regularizing Adversarial
Learning"): small MLPs on a scalar, the classifier's logit, that tell it from samples of
N(mu, 1). Their losses are in :func:`fastreg.losses.vral_meta_loss`; the classifier's in
``fastreg.losses.d_loss("vral", ..., meta_real=R, meta_fake=F)``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .dcgan import _check_positive


class MetaDiscriminator(nn.Module):
    """logits ``[B]`` (or ``[B, 1]``) -> meta-logits ``[B]``: 1 -> ``hidden`` (64) -> 1 with
    LeakyReLU(``slope`` = 0.2) in between."""

    def __init__(self, hidden: int = 64, slope: float = 0.2):
        super().__init__()
        _check_positive("MetaDiscriminator", hidden=hidden)
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.LeakyReLU(slope), nn.Linear(hidden, 1))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.net(y.reshape(-1, 1)).reshape(-1)


def make_meta_discriminators(hidden: int = 64) -> tuple[MetaDiscriminator, MetaDiscriminator]:
    """``(F, R)``: the meta-discriminator on fake logits and the one on real logits."""
    return MetaDiscriminator(hidden), MetaDiscriminator(hidden)
