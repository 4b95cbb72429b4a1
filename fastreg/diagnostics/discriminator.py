"""Discriminator outputs on real and generated samples, and D training against a frozen generator.

- :func:`output_histograms`: histograms of the logits ``v`` on real and on fake samples, the
  picture of Grewal, Hjelm, Bengio 2018 ("Variance Regularizing Adversarial Learning", figs.
  1-2): an unregularized D trained k:1 (k = 50 there) pushes the two histograms apart until they
  no longer overlap.
- :func:`overlap_coefficient`: how much two histograms on shared bins overlap,
  ``OVL = sum_i min(p_i, q_i)`` for the normalized bin masses ``p``, ``q`` (1 for identical
  histograms, 0 for disjoint ones; the overlapping coefficient of Inman & Bradley 1989, here on
  binned masses). :func:`output_histograms` reports it as ``"overlap"``.
- :func:`train_discriminator`: D steps against a *frozen* generator with a chosen variant's D loss
  (default the logistic loss ``softplus(-v_r) + softplus(v_f)`` of ``ns``): both the k extra D steps
  of the k:1 picture and the fresh D of the vanishing-gradient experiment (Arjovsky & Bottou 2017)
  use it. Adam 2e-4, betas (0.5, 0.999), the DCGAN recipe of both papers, for every variant;
  optional instance noise on D's inputs. Its D step is the trainer's: :func:`fastreg.train.steps.logits_and_penalty`
  and :func:`fastreg.train.steps.d_loss` with the regularizer row the variant carries (``wgan-gp``: ``gp``), then
  :func:`fastreg.train.steps.after_d_update` (WGAN's clipping).

Modules are used in the mode they are given (train or eval); the diagnostics draw their own
randomness from seeded generators (network initialisation aside).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from .. import losses, progress
from ..data.images import images_at
from ..regularizers import in_force, instance_noise
from ..train.steps import after_d_update, d_loss, logits_and_penalty

D_LR, D_BETAS = 2e-4, (0.5, 0.999)
BATCH = 64


class RealSampler:
    """Random real samples of a dataset (image dataset or toy mixture), from its own seeded generator."""

    def __init__(self, dataset, seed: int = 0):
        self.dataset, self.generator = dataset, torch.Generator().manual_seed(seed)

    def __call__(self, n: int) -> torch.Tensor:
        if hasattr(self.dataset, "sample"):
            return self.dataset.sample(n)
        return images_at(self.dataset, torch.randint(len(self.dataset), (n,), generator=self.generator))


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


def overlap_coefficient(p: torch.Tensor | list, q: torch.Tensor | list) -> float:
    r"""Overlap of two histograms on the same bins: :math:`\mathrm{OVL} = \sum_i \min(p_i, q_i)` with
    :math:`p_i = c_i / \sum_j c_j` (likewise :math:`q`) the normalized bin masses of the counts ``p``, ``q``.

    1 for identical (or proportional) histograms, 0 when no bin holds mass of both; the overlapping
    coefficient of two densities (Inman & Bradley 1989) on binned masses.
    """
    p, q = (torch.as_tensor(c, dtype=torch.float64).reshape(-1) for c in (p, q))
    if p.shape != q.shape:
        raise ValueError(f"q: expected {p.numel()} bins like p, got {q.numel()}")
    if (p < 0).any() or (q < 0).any() or p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("p, q: bin counts must be non-negative with a positive total")
    return torch.minimum(p / p.sum(), q / q.sum()).sum().clamp(max=1.0).item()


def decision_threshold(variant: str, mu_real: float = 1.0, mu_fake: float = 0.0) -> float | None:
    """The output at which ``variant``'s D is indifferent between real and fake, for :func:`output_histograms`:

    - ``gan``, ``ns``, ``bgan``: 0 (``sigmoid(v) = 1/2``);
    - ``lsgan``: ``(a + b) / 2`` = 0.5, halfway between the fake and real targets a = 0, b = 1 (Mao et al.);
    - ``vral``: ``(mu_real + mu_fake) / 2``, halfway between the two target means (Grewal et al.);
    - ``wgan``, ``wgan-gp``, ``fgan:<div>``: None, no threshold of the loss's own (a critic's outputs are
      defined up to a shift); the histograms then split at the midpoint of the real and fake means.
    """
    base, _ = losses.parse_variant(variant)
    if base in ("gan", "ns", "bgan"):
        return 0.0
    if base == "lsgan":
        return (losses.LSGAN_DEFAULTS["a"] + losses.LSGAN_DEFAULTS["b"]) / 2
    if base == "vral":
        return (mu_real + mu_fake) / 2
    return None


def output_histograms(v_real: torch.Tensor, v_fake: torch.Tensor, bins: int = 50,
                      threshold: float | None = 0.0) -> dict:
    """Histograms of real and fake logits on shared bins, with their means, spreads, D's accuracy
    (real called real when v > ``threshold``, fake called fake when v <= ``threshold``; the default 0 is a
    0.5 threshold on sigmoid(v), see :func:`decision_threshold` for other losses; None: the midpoint of the
    real and fake means, reported as ``"threshold"``) and the :func:`overlap_coefficient` of the two
    histograms (``"overlap"``)."""
    both = torch.cat([v_real, v_fake]).double()
    low, high = both.min().item(), both.max().item()
    if low == high:
        low, high = low - 0.5, high + 0.5
    edges = torch.linspace(low, high, bins + 1, dtype=torch.float64)

    def counts(v: torch.Tensor) -> list[int]:
        return torch.histc(v.double(), bins=bins, min=low, max=high).long().tolist()

    if threshold is None:
        threshold = (v_real.double().mean().item() + v_fake.double().mean().item()) / 2
    accuracy = ((v_real > threshold).sum() + (v_fake <= threshold).sum()).item() / (len(v_real) + len(v_fake))
    real, fake = counts(v_real), counts(v_fake)
    return {"edges": edges.tolist(), "real": real, "fake": fake,
            "real_mean": v_real.mean().item(), "real_std": v_real.std().item(),
            "fake_mean": v_fake.mean().item(), "fake_std": v_fake.std().item(), "accuracy": accuracy,
            "threshold": float(threshold),
            "overlap": overlap_coefficient(real, fake)}


def check_variant(variant: str) -> str:
    """``variant`` if :func:`train_discriminator` can train a D with it, else ValueError naming ``variant``."""
    base, _ = losses.parse_variant(variant)
    if base == "vral":
        raise ValueError("variant: 'vral' trains D through meta-discriminators on its logits, which a D trained "
                         "alone against a frozen G does not have; choose another variant "
                         "(gan, ns, lsgan, wgan, wgan-gp, bgan, fgan:<div>)")
    return variant


def _draws_from(x: torch.Tensor, generator: torch.Generator) -> torch.Generator | None:
    """``generator`` where it can draw on ``x``'s device, else None (the device's default generator)."""
    return generator if generator.device == x.device else None


def discriminator_loss(D: nn.Module, x_real: torch.Tensor, x_fake: torch.Tensor, variant: str = "ns",
                       generator: torch.Generator | None = None) -> torch.Tensor:
    r"""The loss D minimizes under ``variant``: :func:`fastreg.losses.d_loss` on D's logits plus the penalty the
    variant carries at its row's default weight (``wgan-gp``: :math:`\lambda\,E(\lVert\nabla_x v(\hat x)\rVert
    - 1)^2`, :math:`\lambda = 10`, Gulrajani et al. 2017), computed by the trainer's step functions
    (:func:`fastreg.train.steps.logits_and_penalty`, :func:`fastreg.train.steps.d_loss`)."""
    row = in_force(variant)
    terms = logits_and_penalty(D, x_real, x_fake, row, row.has_penalty, variant=variant, generator=generator)
    return d_loss(variant, terms, row.loss_weight(row.weight))


def train_discriminator(D: nn.Module, G: nn.Module, real: Callable[[int], torch.Tensor], steps: int,
                        generator: torch.Generator, batch_size: int = BATCH,
                        on_step: Callable[[int, nn.Module], None] | None = None, variant: str = "ns",
                        noise: float = 0.0, lr: float = D_LR, desc: str | None = None) -> nn.Module:
    r"""``steps`` D steps (Adam, ``lr`` 2e-4, betas (0.5, 0.999)) against the frozen ``G``, minimizing
    ``variant``'s D loss (:func:`discriminator_loss`; default ``ns``, the logistic loss
    :math:`E_P\,\mathrm{softplus}(-v) + E_Q\,\mathrm{softplus}(v)`). ``wgan`` clamps D's weights to
    [-0.01, 0.01] after each step (Arjovsky et al. 2017); ``vral`` is rejected (:func:`check_variant`).

    ``noise`` > 0 adds instance noise :math:`x + \sigma\xi`, :math:`\xi \sim N(0, I)`, to D's real
    and fake inputs (:func:`fastreg.regularizers.instance_noise`, Arjovsky & Bottou 2017 section 3.1).
    Latents, noise (on CPU) and WGAN-GP's interpolation weights (on CPU) come from ``generator``.

    ``on_step(t, D)`` runs before the first step (t = 0) and after each step t = 1..steps. ``desc``: show a
    progress bar with this label (on a terminal).
    """
    check_variant(variant)
    if not noise >= 0:
        raise ValueError(f"noise: must be >= 0, got {noise}")
    optimizer = torch.optim.Adam(D.parameters(), lr=lr, betas=D_BETAS)
    for t in progress.bar(range(steps + 1), desc=desc, unit="D step", leave=False,
                          **({} if desc else {"disable": True})):
        if on_step is not None:
            on_step(t, D)
        if t == steps:
            break
        x_fake = generate(G, batch_size, generator)
        x_real = real(batch_size).to(**placement(D))
        if noise > 0:
            x_real = instance_noise(x_real, noise, _draws_from(x_real, generator))
            x_fake = instance_noise(x_fake, noise, _draws_from(x_fake, generator))
        loss = discriminator_loss(D, x_real, x_fake, variant, _draws_from(x_real, generator))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        after_d_update(D, variant)
    return D
