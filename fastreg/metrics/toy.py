"""Mode coverage and sample quality on Gaussian mixtures.

The usual toy metrics of the GAN literature (e.g. Roth et al. 2017's mixture
experiments): a generated sample is *high quality* when it lies within 3 sigma
of the nearest mode; a mode is *covered* when it receives at least
``min_share`` of the high-quality samples it would get if the generator
matched the mixture exactly (equal weights: N / K each).

Mode counts miss how mass is spread (a generator can cover every mode and still put most samples
on one), so :func:`wasserstein_distance` measures the whole distribution: the exact p-Wasserstein
distance between the generated sample and an equally large sample of the mixture (the earth
mover's distance of Arjovsky, Chintala, Bottou 2017 for p = 1).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

QUALITY_RADIUS_SIGMAS = 3.0


class ModeCoverage(NamedTuple):
    modes_covered: int
    n_modes: int
    high_quality_fraction: float
    samples_per_mode: list[int]  # high-quality samples nearest to each mode


def mode_coverage(samples: torch.Tensor, modes: torch.Tensor, sigma: float, min_share: float = 0.1) -> ModeCoverage:
    """Modes covered and the high-quality fraction of ``samples`` [N, d] for a mixture with ``modes`` [K, d]."""
    if samples.dim() != 2 or samples.shape[1] != modes.shape[1]:
        raise ValueError(f"samples: expected [N, {modes.shape[1]}], got {tuple(samples.shape)}")
    if len(samples) == 0:
        raise ValueError("samples: empty")
    distances = torch.cdist(samples.double(), modes.double())
    nearest_distance, nearest = distances.min(dim=1)
    good = nearest_distance <= QUALITY_RADIUS_SIGMAS * sigma
    counts = torch.bincount(nearest[good], minlength=len(modes))
    threshold = max(1.0, min_share * len(samples) / len(modes))
    return ModeCoverage(int((counts >= threshold).sum()), len(modes), good.double().mean().item(), counts.tolist())


def wasserstein_distance(x: torch.Tensor, y: torch.Tensor, p: int = 1) -> float:
    """Exact W_p between the empirical distributions of ``x`` and ``y`` ([n, d] each, equal n).

    W_p = (min over permutations s of (1/n) sum_i ||x_i - y_s(i)||_2^p)^(1/p): between two uniform
    measures on n points an optimal transport plan is a permutation (Birkhoff-von Neumann), found
    by the Hungarian algorithm (scipy's ``linear_sum_assignment``, O(n^3): a few thousand points).
    """
    from scipy.optimize import linear_sum_assignment

    if x.dim() != 2 or y.dim() != 2 or x.shape != y.shape:
        raise ValueError(f"y: expected the shape of x, [n, d], got {tuple(x.shape)} and {tuple(y.shape)}")
    if len(x) == 0:
        raise ValueError("x: empty")
    if p < 1:
        raise ValueError(f"p: must be >= 1, got {p}")
    cost = torch.cdist(x.double(), y.double()).pow(p).numpy()
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean() ** (1 / p))
