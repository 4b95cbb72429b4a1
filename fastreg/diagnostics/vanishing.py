r"""The vanishing-gradient experiment of Arjovsky & Bottou 2017 ("Towards Principled Methods for
Training Generative Adversarial Networks", Theorems 2.4 and 2.6, figs. 2-3).

Freeze a trained generator, train a fresh discriminator from scratch against it, and every few D
steps measure the generator's gradient under both costs:

- the original (minimax) cost :math:`E_z \log(1 - D(G(z))) = -E\,\mathrm{softplus}(v)`: as D
  approaches the optimal discriminator, :math:`\lVert\nabla_\theta\rVert` goes to 0 (Thm 2.4);
- the :math:`-\log D` cost :math:`E\,\mathrm{softplus}(-v)`: its gradient does not vanish but
  has growing variance, so updates get unstable (Thm 2.6).

Each record holds the mean and standard deviation of the gradient norm (over all of G's
parameters) across several independent latent batches, D's accuracy on one fresh batch, and the
relative variance of the :math:`-\log D` gradient across the batches,
:math:`\mathrm{tr}\,\widehat{\mathrm{Cov}}(g) / \lVert\bar g\rVert^2` (the sample covariance of the
per-batch gradient vectors :math:`g_1..g_B` over their mean's squared norm; Thm 2.6 is about this
variance growing as D improves; it needs ``batches`` >= 10 to mean much).

With instance noise :math:`\sigma` (Arjovsky & Bottou 2017, section 3.1: add :math:`\sigma\xi`,
:math:`\xi \sim N(0, I)`, to everything D sees) the fresh D trains on noisy real and fake samples
and the probe differentiates :math:`\log(1 - D(G(z) + \sigma\xi))`: the two noisy distributions
overlap, D cannot become perfect, and the minimax gradient no longer vanishes. Every record draws
the same noise (a generator re-seeded per record), so records differ only by D.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..regularizers import instance_noise
from .discriminator import BATCH, D_LR, generate, logits, placement, train_discriminator


class GradientRecord(NamedTuple):
    d_step: int
    minimax_mean: float    # ||grad_theta E log(1 - D(G(z)))||
    minimax_std: float
    nonsat_mean: float     # ||grad_theta E -log D(G(z))||
    nonsat_std: float
    d_accuracy: float
    nonsat_relvar: float = float("nan")   # tr Cov(grad -log D) / ||mean grad||^2 across the latent batches


def _spread(values: torch.Tensor) -> float:
    return values.std().item() if len(values) > 1 else 0.0


def generator_gradients(G: nn.Module, D: nn.Module, z: torch.Tensor, noise: float = 0.0,
                        generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The flattened gradients (grad E log(1 - D(G(z))), grad E -log D(G(z))) w.r.t. G's parameters, for one
    latent batch; with ``noise`` = sigma > 0, D sees ``G(z) + sigma xi`` (``xi`` drawn with ``generator``)."""
    params = list(G.parameters())
    x = instance_noise(G(z.to(**placement(G))), noise, generator)
    v = D(x).reshape(-1)
    flat = []
    for cost in (-F.softplus(v).mean(), F.softplus(-v).mean()):
        grads = torch.autograd.grad(cost, params, retain_graph=True, allow_unused=True)
        flat.append(torch.cat([g.reshape(-1) for g in grads if g is not None]).double())
    return flat[0], flat[1]


def generator_gradient_norms(G: nn.Module, D: nn.Module, z: torch.Tensor, noise: float = 0.0,
                             generator: torch.Generator | None = None) -> tuple[float, float]:
    """(||grad E log(1 - D(G(z)))||, ||grad E -log D(G(z))||) w.r.t. G's parameters, for one latent batch;
    with ``noise`` = sigma > 0, D sees ``G(z) + sigma xi`` (``xi`` drawn with ``generator``)."""
    minimax, nonsat = generator_gradients(G, D, z, noise, generator)
    return torch.linalg.vector_norm(minimax).item(), torch.linalg.vector_norm(nonsat).item()


def relative_variance(gradients: torch.Tensor) -> float:
    r""":math:`\mathrm{tr}\,\widehat{\mathrm{Cov}}(g) / \lVert\bar g\rVert^2` of per-batch gradient vectors
    ``gradients`` ``[B, P]`` (unbiased sample covariance; NaN for B < 2 or a zero mean)."""
    if len(gradients) < 2:
        return float("nan")
    mean = gradients.mean(dim=0)
    denominator = mean.square().sum().item()
    return gradients.var(dim=0, unbiased=True).sum().item() / denominator if denominator > 0 else float("nan")


def vanishing_gradients(G: nn.Module, D: nn.Module, real: Callable[[int], torch.Tensor], d_steps: int = 500,
                        every: int = 25, batches: int = 5, batch_size: int = BATCH,
                        seed: int = 0, noise: float = 0.0, lr: float = D_LR,
                        desc: str | None = "fresh D") -> tuple[list[GradientRecord], nn.Module]:
    """Train the fresh ``D`` for ``d_steps`` (logistic loss, Adam ``lr``) against the frozen ``G``, recording
    every ``every`` steps (and at step 0); returns the records and the trained D. G's parameters are never
    updated. ``noise`` = sigma > 0: instance noise on D's inputs in training, in the gradient probe and in
    the accuracy check (see the module docstring). ``desc``: the progress bar's label (None: no bar)."""
    if every < 1 or d_steps < 0:
        raise ValueError(f"every: must be >= 1 with d_steps >= 0, got every={every}, d_steps={d_steps}")
    if not noise >= 0:
        raise ValueError(f"noise: must be >= 0, got {noise}")
    probe = torch.Generator().manual_seed(seed + 1)  # the same latent batches at every record
    latents = [torch.randn(batch_size, G.z_dim, generator=probe) for _ in range(batches)]
    check_real, check_fake = real(batch_size), generate(G, batch_size, probe)
    records = []

    def record(t: int, D: nn.Module) -> None:
        if t % every and t != d_steps:
            return
        draws = torch.Generator(placement(D)["device"]).manual_seed(seed + 2)  # the same noise at every record
        minimax, nonsat, vectors = [], [], []
        for z in latents:
            g_minimax, g_nonsat = generator_gradients(G, D, z, noise, draws)
            minimax.append(torch.linalg.vector_norm(g_minimax).item())
            nonsat.append(torch.linalg.vector_norm(g_nonsat).item())
            vectors.append(g_nonsat)
        minimax, nonsat = torch.tensor(minimax, dtype=torch.float64), torch.tensor(nonsat, dtype=torch.float64)

        def seen(x: torch.Tensor) -> torch.Tensor:
            return instance_noise(x.to(**placement(D)), noise, draws) if noise > 0 else x

        v_real, v_fake = logits(D, seen(check_real)), logits(D, seen(check_fake))
        accuracy = ((v_real > 0).sum() + (v_fake <= 0).sum()).item() / (2 * batch_size)
        records.append(GradientRecord(t, minimax.mean().item(), _spread(minimax), nonsat.mean().item(),
                                      _spread(nonsat), accuracy, relative_variance(torch.stack(vectors))))

    G.requires_grad_(True)
    train_discriminator(D, G, real, d_steps, torch.Generator().manual_seed(seed), batch_size, on_step=record,
                        noise=noise, lr=lr, desc=desc)
    G.zero_grad(set_to_none=True)
    return records, D
