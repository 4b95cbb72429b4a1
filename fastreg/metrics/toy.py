"""Mode coverage and sample quality on Gaussian mixtures.

The usual toy metrics of the GAN literature (e.g. Roth et al. 2017's mixture
experiments): a generated sample is *high quality* when it lies within 3 sigma
of the nearest mode; a mode is *covered* when it receives at least
``min_share`` of the high-quality samples it would get if the generator
matched the mixture exactly (equal weights: N / K each).
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
