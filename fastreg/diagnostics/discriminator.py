"""Discriminator outputs on real and generated samples, and D training against a frozen generator.

- :func:`output_histograms`: histograms of the logits ``v`` on real and on fake samples, the
  picture of Grewal, Hjelm, Bengio 2018 ("Variance Regularizing Adversarial Learning", figs.
  1-2): an unregularized D trained k:1 (k = 50 there) pushes the two histograms apart until they
  no longer overlap.
- :func:`train_discriminator`: D steps with the logistic loss ``softplus(-v_r) + softplus(v_f)``
  against a *frozen* generator: both the k extra D steps of the k:1 picture and the fresh D of the
  vanishing-gradient experiment (Arjovsky & Bottou 2017) use it. Adam 2e-4, betas (0.5, 0.999),
  the DCGAN recipe of both papers.

Modules are used in the mode they are given (train or eval); the diagnostics draw their own
randomness from seeded generators (network initialisation aside).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from .. import losses

D_LR, D_BETAS = 2e-4, (0.5, 0.999)
BATCH = 64


class RealSampler:
    """Random real samples of a dataset (image dataset or toy mixture), from its own seeded generator."""

    def __init__(self, dataset, seed: int = 0):
        self.dataset, self.generator = dataset, torch.Generator().manual_seed(seed)

    def __call__(self, n: int) -> torch.Tensor:
        if hasattr(self.dataset, "sample"):
            return self.dataset.sample(n)
        index = torch.randint(len(self.dataset), (n,), generator=self.generator)
        images = getattr(self.dataset, "images", None)
        if isinstance(images, torch.Tensor):
            return images[index]
        return torch.stack([self.dataset[int(i)][0] for i in index])


def placement(module: nn.Module) -> dict:
    """``{"device": ..., "dtype": ...}`` of a module's first parameter."""
    p = next(module.parameters())
    return {"device": p.device, "dtype": p.dtype}


def generate(G: nn.Module, n: int, generator: torch.Generator, batch_size: int = 500) -> torch.Tensor:
    """``n`` samples of ``G`` (no gradients) from latents drawn with ``generator``."""
    z = torch.randn(n, G.z_dim, generator=generator)
    with torch.no_grad():
        return torch.cat([G(chunk.to(**placement(G))) for chunk in z.split(batch_size)])


def logits(D: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """D's logits ``[N]`` (float64, CPU) in batches, no gradients."""
    with torch.no_grad():
        return torch.cat([D(chunk.to(**placement(D))).reshape(-1).double().cpu() for chunk in x.split(batch_size)])


def output_histograms(v_real: torch.Tensor, v_fake: torch.Tensor, bins: int = 50) -> dict:
    """Histograms of real and fake logits on shared bins, with their means, spreads and D's accuracy
    (real called real when v > 0, fake called fake when v <= 0; a 0.5 threshold on sigmoid(v))."""
    both = torch.cat([v_real, v_fake]).double()
    low, high = both.min().item(), both.max().item()
    if low == high:
        low, high = low - 0.5, high + 0.5
    edges = torch.linspace(low, high, bins + 1, dtype=torch.float64)

    def counts(v: torch.Tensor) -> list[int]:
        return torch.histc(v.double(), bins=bins, min=low, max=high).long().tolist()

    accuracy = ((v_real > 0).sum() + (v_fake <= 0).sum()).item() / (len(v_real) + len(v_fake))
    return {"edges": edges.tolist(), "real": counts(v_real), "fake": counts(v_fake),
            "real_mean": v_real.mean().item(), "real_std": v_real.std().item(),
            "fake_mean": v_fake.mean().item(), "fake_std": v_fake.std().item(), "accuracy": accuracy}


def train_discriminator(D: nn.Module, G: nn.Module, real: Callable[[int], torch.Tensor], steps: int,
                        generator: torch.Generator, batch_size: int = BATCH,
                        on_step: Callable[[int, nn.Module], None] | None = None) -> nn.Module:
    """``steps`` logistic-loss D steps (Adam 2e-4, betas (0.5, 0.999)) against the frozen ``G``.

    ``on_step(t, D)`` runs before the first step (t = 0) and after each step t = 1..steps.
    """
    optimizer = torch.optim.Adam(D.parameters(), lr=D_LR, betas=D_BETAS)
    for t in range(steps + 1):
        if on_step is not None:
            on_step(t, D)
        if t == steps:
            break
        x_fake = generate(G, batch_size, generator)
        x_real = real(batch_size).to(**placement(D))
        loss = losses.d_loss("ns", D(x_real).reshape(-1), D(x_fake).reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return D
