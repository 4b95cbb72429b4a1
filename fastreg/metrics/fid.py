r"""Fréchet Inception Distance and Kernel Inception Distance on feature vectors.

- FID (Heusel, Ramsauer, Unterthiner, Nessler, Hochreiter 2017, "GANs Trained by a Two
  Time-Scale Update Rule Converge to a Local Nash Equilibrium"): fit a Gaussian to each feature
  set and take the Fréchet (2-Wasserstein) distance between the fits,

      FID = ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r^{1/2} S_g S_r^{1/2})^{1/2}).

  The trace of the matrix square root is computed from eigenvalues of the symmetric positive
  semi-definite ``S_r^{1/2} S_g S_r^{1/2}`` (same trace as ``(S_r S_g)^{1/2}``), so no complex
  round-off appears. FID is biased: it grows as the sample count shrinks, so compare FIDs only at
  equal sample counts.
- KID (Binkowski, Sutherland, Arbel, Gretton 2018, "Demystifying MMD GANs"): the unbiased
  estimate of the squared MMD with the cubic polynomial kernel ``k(x, y) = (x.y / d + 1)^3``
  (d the feature dimension), averaged over random subsets. Unbiased, so it can be slightly
  negative when the two sets come from one distribution.

Features are ``[N, d]``; every computation runs in float64. Which network produced the features
(the *extractor*) is the caller's to record: FIDs from different extractors are not comparable.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

KID_SUBSETS = 100      # Binkowski et al.'s defaults
KID_SUBSET_SIZE = 1000


def _check_features(name: str, features: torch.Tensor, min_rows: int = 2) -> torch.Tensor:
    if not torch.is_tensor(features) or features.dim() != 2:
        raise ValueError(f"{name}: expected features [N, d], got {getattr(features, 'shape', type(features))}")
    if features.shape[0] < min_rows:
        raise ValueError(f"{name}: needs at least {min_rows} rows, got {features.shape[0]}")
    return features.detach().to(torch.float64)


def gaussian_fit(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean [d], covariance [d, d]) of ``features`` [N, d], the covariance with the 1/(N-1) normalization."""
    x = _check_features("features", features)
    mean = x.mean(0)
    centred = x - mean
    return mean, centred.T @ centred / (x.shape[0] - 1)


def _symmetric_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def frechet_distance(mean1: torch.Tensor, cov1: torch.Tensor, mean2: torch.Tensor, cov2: torch.Tensor) -> float:
    """||m1 - m2||^2 + Tr(C1 + C2 - 2 (C1^{1/2} C2 C1^{1/2})^{1/2}): the 2-Wasserstein distance squared
    between N(m1, C1) and N(m2, C2)."""
    mean1, cov1, mean2, cov2 = (t.to(torch.float64) for t in (mean1, cov1, mean2, cov2))
    if mean1.shape != mean2.shape or cov1.shape != cov2.shape or cov1.shape != (*mean1.shape, *mean1.shape):
        raise ValueError(f"cov1: mean and covariance shapes disagree: {tuple(mean1.shape)}, {tuple(cov1.shape)}, "
                         f"{tuple(mean2.shape)}, {tuple(cov2.shape)}")
    root1 = _symmetric_sqrt(cov1)
    cross = torch.linalg.eigvalsh(root1 @ cov2 @ root1).clamp_min(0).sqrt().sum()
    value = (mean1 - mean2).square().sum() + cov1.trace() + cov2.trace() - 2 * cross
    return value.item()


def fid_from_features(real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID between two feature sets [N, d] and [M, d] (Heusel et al. 2017)."""
    _check_features("real", real)
    _check_features("fake", fake)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"fake: feature dimension {fake.shape[1]} differs from real's {real.shape[1]}")
    return frechet_distance(*gaussian_fit(real), *gaussian_fit(fake))


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """k(x, y) = (x.y / d + 1)^3 for all row pairs: [N, M]."""
    return (x @ y.T / x.shape[1] + 1) ** 3


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD^2: mean_{i != j} k(x_i, x_j) + mean_{i != j} k(y_i, y_j) - 2 mean_{i, j} k(x_i, y_j)."""
    m, n = x.shape[0], y.shape[0]
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within_x = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
    within_y = (k_yy.sum() - k_yy.diagonal().sum()) / (n * (n - 1))
    return (within_x + within_y - 2 * k_xy.mean()).item()


class KID(NamedTuple):
    mean: float   # the KID
    std: float    # spread over subsets (0 with one subset)
    subsets: int
    subset_size: int


def kid_from_features(real: torch.Tensor, fake: torch.Tensor, subsets: int = KID_SUBSETS,
                      subset_size: int = KID_SUBSET_SIZE, generator: torch.Generator | None = None) -> KID:
    """KID (Binkowski et al. 2018): unbiased MMD^2 averaged over ``subsets`` random subsets of
    ``min(subset_size, N, M)`` rows of each set, drawn without replacement; a single subset (all
    rows) when that size is both sets' size."""
    real, fake = _check_features("real", real), _check_features("fake", fake)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"fake: feature dimension {fake.shape[1]} differs from real's {real.shape[1]}")
    if subsets < 1:
        raise ValueError(f"subsets: must be >= 1, got {subsets}")
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise ValueError(f"subset_size: must be >= 2, got {subset_size}")
    if size == len(real) == len(fake):
        return KID(mmd2_unbiased(real, fake), 0.0, 1, size)
    generator = generator or torch.Generator().manual_seed(0)
    values = torch.tensor([mmd2_unbiased(real[torch.randperm(len(real), generator=generator)[:size]],
                                         fake[torch.randperm(len(fake), generator=generator)[:size]])
                           for _ in range(subsets)], dtype=torch.float64)
    return KID(values.mean().item(), values.std().item() if subsets > 1 else 0.0, subsets, size)
