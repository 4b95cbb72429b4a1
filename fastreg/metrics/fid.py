r"""Fréchet Inception Distance and Kernel Inception Distance on feature vectors.

- FID (Heusel, Ramsauer, Unterthiner, Nessler, Hochreiter 2017, "GANs Trained by a Two
  Time-Scale Update Rule Converge to a Local Nash Equilibrium"): fit a Gaussian to each feature
  set and take the Fréchet (2-Wasserstein) distance between the fits,

      FID = ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a^{1/2} S_b S_a^{1/2})^{1/2}).

  The trace of the matrix square root is computed from the eigenvalues of the symmetric
  ``S_a^{1/2} S_b S_a^{1/2}`` (same trace as ``sqrtm(S_a S_b)``). Round-off can make a few of
  them slightly negative; their square roots are the imaginary part that ``scipy.linalg.sqrtm``
  would return. They are dropped from the trace and their sum ``sum sqrt(|lambda_neg|)`` is
  reported as the *imaginary residue* (:class:`Frechet`), so a large one is visible rather than
  silently discarded. FID is biased: it grows as the sample count shrinks, so compare FIDs only
  at equal sample counts.
- The Gaussian fits are accumulated batch by batch (:class:`GaussianStats`, float64 sums), so
  the statistics of 50,000 samples never need all their features (or images) in memory at once.
- KID (Binkowski, Sutherland, Arbel, Gretton 2018, "Demystifying MMD GANs"): the unbiased
  estimate of the squared MMD with the cubic polynomial kernel ``k(x, y) = (x.y / d + 1)^3``
  (d the feature dimension), averaged over random subsets, with its standard deviation over the
  subsets. Unbiased, so it can be slightly negative when the two sets come from one distribution.

Features are ``[N, d]`` tensors or arrays; every computation runs in float64. Which network
produced the features (the *extractor*) is the caller's to record: FIDs from different
extractors are not comparable.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

KID_SUBSETS = 100      # Binkowski et al.'s defaults
KID_SUBSET_SIZE = 1000


def _check_features(name: str, features, min_rows: int = 2) -> torch.Tensor:
    """``features`` as a float64 tensor [N, d] (numpy arrays accepted); ValueError naming ``name``."""
    if not torch.is_tensor(features):
        try:
            features = torch.as_tensor(features)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"{name}: expected features [N, d], got {type(features).__name__}") from exc
    if features.dim() != 2:
        raise ValueError(f"{name}: expected features [N, d], got shape {tuple(features.shape)}")
    if features.shape[0] < min_rows:
        raise ValueError(f"{name}: needs at least {min_rows} rows, got {features.shape[0]}")
    return features.detach().to("cpu", torch.float64)


def _check_same_width(a: torch.Tensor, b: torch.Tensor, name_b: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{name_b}: feature dimension {b.shape[1]} differs from the other set's {a.shape[1]}")


class GaussianStats:
    """Mean and covariance (1/(N-1) normalization) of features fed batch by batch.

    Sums are taken in float64 around a shift (the first batch's mean), which keeps the
    one-pass covariance ``(sum xx^T - N m m^T)/(N-1)`` accurate when the mean is large.
    """

    def __init__(self):
        self.count = 0
        self._shift = self._sum = self._outer = None

    @classmethod
    def of(cls, features) -> "GaussianStats":
        return cls().update(features)

    def update(self, features) -> "GaussianStats":
        x = _check_features("features", features, min_rows=1)
        if self._shift is None:
            self._shift = x.mean(0)
            self._sum = torch.zeros_like(self._shift)
            self._outer = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64)
        elif x.shape[1] != self._shift.shape[0]:
            raise ValueError(f"features: dimension {x.shape[1]} differs from the earlier batches' "
                             f"{self._shift.shape[0]}")
        centred = x - self._shift
        self._sum += centred.sum(0)
        self._outer += centred.T @ centred
        self.count += x.shape[0]
        return self

    @property
    def mean(self) -> torch.Tensor:
        self._require(1)
        return self._shift + self._sum / self.count

    @property
    def covariance(self) -> torch.Tensor:
        self._require(2)
        offset = self._sum / self.count
        return (self._outer - self.count * torch.outer(offset, offset)) / (self.count - 1)

    def _require(self, rows: int) -> None:
        if self.count < rows:
            raise ValueError(f"features: needs at least {rows} rows, got {self.count}")


class Frechet(NamedTuple):
    distance: float            # the Fréchet distance (FID when the features are Inception's)
    imaginary_residue: float   # sum of sqrt(|lambda|) over the negative eigenvalues dropped from the trace


def _symmetric_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def gaussian_frechet(mean_a: torch.Tensor, cov_a: torch.Tensor, mean_b: torch.Tensor,
                     cov_b: torch.Tensor) -> Frechet:
    """||m_a - m_b||^2 + Tr(C_a + C_b - 2 (C_a^{1/2} C_b C_a^{1/2})^{1/2}): the squared 2-Wasserstein
    distance between N(m_a, C_a) and N(m_b, C_b), with the imaginary residue (module doc)."""
    mean_a, cov_a, mean_b, cov_b = (t.to(torch.float64) for t in (mean_a, cov_a, mean_b, cov_b))
    if mean_a.shape != mean_b.shape or cov_a.shape != cov_b.shape or cov_a.shape != (*mean_a.shape, *mean_a.shape):
        raise ValueError(f"cov_a: mean and covariance shapes disagree: {tuple(mean_a.shape)}, {tuple(cov_a.shape)}, "
                         f"{tuple(mean_b.shape)}, {tuple(cov_b.shape)}")
    root_a = _symmetric_sqrt(cov_a)
    eigenvalues = torch.linalg.eigvalsh(root_a @ cov_b @ root_a)
    cross = eigenvalues.clamp_min(0).sqrt().sum()
    residue = (-eigenvalues).clamp_min(0).sqrt().sum()
    value = (mean_a - mean_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * cross
    return Frechet(value.item(), residue.item())


def stats_frechet(a: GaussianStats, b: GaussianStats) -> Frechet:
    """:func:`gaussian_frechet` of two accumulated Gaussian fits."""
    return gaussian_frechet(a.mean, a.covariance, b.mean, b.covariance)


def frechet_distance(features_a, features_b) -> float:
    """FID between two feature sets [N, d] and [M, d] (Heusel et al. 2017): the Fréchet distance of
    their Gaussian fits. Symmetric; 0 for a set with itself."""
    a, b = _check_features("features_a", features_a), _check_features("features_b", features_b)
    _check_same_width(a, b, "features_b")
    return stats_frechet(GaussianStats.of(a), GaussianStats.of(b)).distance


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


def kid(features_a, features_b, subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE,
        generator: torch.Generator | None = None) -> KID:
    """KID (Binkowski et al. 2018): unbiased MMD^2 averaged over ``subsets`` random subsets of
    ``min(subset_size, N, M)`` rows of each set, drawn without replacement, with the standard
    deviation over subsets; a single subset (all rows) when that size is both sets' size."""
    a, b = _check_features("features_a", features_a), _check_features("features_b", features_b)
    _check_same_width(a, b, "features_b")
    if subsets < 1:
        raise ValueError(f"subsets: must be >= 1, got {subsets}")
    size = min(subset_size, len(a), len(b))
    if size < 2:
        raise ValueError(f"subset_size: must be >= 2, got {subset_size}")
    if size == len(a) == len(b):
        return KID(mmd2_unbiased(a, b), 0.0, 1, size)
    generator = generator or torch.Generator().manual_seed(0)
    values = torch.tensor([mmd2_unbiased(a[torch.randperm(len(a), generator=generator)[:size]],
                                         b[torch.randperm(len(b), generator=generator)[:size]])
                           for _ in range(subsets)], dtype=torch.float64)
    return KID(values.mean().item(), values.std().item() if subsets > 1 else 0.0, subsets, size)
