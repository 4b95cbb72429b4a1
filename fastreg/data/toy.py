"""Toy Gaussian mixtures with seeded, infinite samplers.

- :func:`ring8`: 8 Gaussians evenly spaced on a circle of radius 2, sigma 0.02 (the 2-D ring of
  Metz et al. 2017, "Unrolled Generative Adversarial Networks").
- :func:`grid25`: 25 Gaussians on the grid {-4, -2, 0, 2, 4}^2, sigma 0.05.
- :func:`misspecified3d`: Roth, Lucchi, Nowozin, Hofmann 2017's "dimensionally misspecified"
  mixture: 7 Gaussians (sigma 0.01) on the unit circle of a plane, embedded in R^3, rotated by
  pi/4 about (1, -1, 0)/sqrt(2) and shifted by (1, 1, 1)/sqrt(3). The noise stays in the plane,
  so the data has no density in R^3.

Each returns a :class:`GaussianMixture`: ``sample(n)`` draws the next ``n`` points from its own
generator (seeded by ``seed``), ``batches(n)`` iterates forever, ``modes`` and ``sigma`` describe
the mixture (for mode-coverage metrics), ``state_dict()`` saves the generator for a resume.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch


class GaussianMixture:
    """Equal-weight mixture of isotropic Gaussians ``N(modes[k], sigma^2 I)`` in the span of
    ``basis`` (the noise has ``basis.shape[0]`` dimensions; the identity basis by default)."""

    def __init__(self, modes: torch.Tensor, sigma: float, seed: int = 0, basis: torch.Tensor | None = None):
        if not sigma > 0:
            raise ValueError(f"GaussianMixture: sigma must be > 0, got {sigma}")
        self.modes = modes.to(torch.float64)
        self.sigma = float(sigma)
        self.basis = torch.eye(modes.shape[1], dtype=torch.float64) if basis is None else basis.to(torch.float64)
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)

    @property
    def dim(self) -> int:
        return self.modes.shape[1]

    @property
    def n_modes(self) -> int:
        return self.modes.shape[0]

    def sample(self, n: int) -> torch.Tensor:
        """The next ``n`` points, ``[n, dim]`` float32."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"sample: n must be a positive int, got {n!r}")
        k = torch.randint(self.n_modes, (n,), generator=self.generator)
        noise = torch.randn(n, self.basis.shape[0], generator=self.generator, dtype=torch.float64)
        return (self.modes[k] + self.sigma * noise @ self.basis).to(torch.float32)

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """An endless stream of ``[batch_size, dim]`` batches."""
        while True:
            yield self.sample(batch_size)

    def state_dict(self) -> dict:
        return {"seed": self.seed, "rng": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.seed = state["seed"]
        self.generator.set_state(state["rng"])

    def __repr__(self) -> str:
        return f"GaussianMixture(n_modes={self.n_modes}, dim={self.dim}, sigma={self.sigma}, seed={self.seed})"


def ring8(seed: int = 0, radius: float = 2.0, sigma: float = 0.02) -> GaussianMixture:
    """8 Gaussians evenly spaced on a circle."""
    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    return GaussianMixture(radius * torch.stack([angles.cos(), angles.sin()], dim=1), sigma, seed)


def grid25(seed: int = 0, spacing: float = 2.0, sigma: float = 0.05) -> GaussianMixture:
    """25 Gaussians on a 5x5 grid centred at the origin."""
    ticks = (torch.arange(5, dtype=torch.float64) - 2) * spacing
    xs, ys = torch.meshgrid(ticks, ticks, indexing="ij")
    return GaussianMixture(torch.stack([xs.flatten(), ys.flatten()], dim=1), sigma, seed)


def rotation_matrix(axis: torch.Tensor, angle: float) -> torch.Tensor:
    """Rotation by ``angle`` about ``axis`` (Rodrigues' formula), float64 ``[3, 3]``."""
    k = axis.to(torch.float64) / torch.linalg.vector_norm(axis.to(torch.float64))
    cross = torch.tensor([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]], dtype=torch.float64)
    return (math.cos(angle) * torch.eye(3, dtype=torch.float64) + math.sin(angle) * cross
            + (1 - math.cos(angle)) * torch.outer(k, k))


MISSPECIFIED_AXIS = (1.0, -1.0, 0.0)
MISSPECIFIED_ANGLE = math.pi / 4


def misspecified3d(seed: int = 0, n_modes: int = 7, sigma: float = 0.01) -> GaussianMixture:
    """Roth et al. 2017's 3-D toy: a planar ring of ``n_modes`` Gaussians, rotated and shifted in R^3."""
    rotation = rotation_matrix(torch.tensor(MISSPECIFIED_AXIS), MISSPECIFIED_ANGLE)
    shift = torch.ones(3, dtype=torch.float64) / math.sqrt(3)
    angles = torch.arange(n_modes, dtype=torch.float64) * (2 * math.pi / n_modes)
    planar = torch.stack([angles.cos(), angles.sin(), torch.zeros_like(angles)], dim=1)
    modes = planar @ rotation.T + shift
    basis = torch.eye(3, dtype=torch.float64)[:2] @ rotation.T  # the plane's two directions, rotated
    return GaussianMixture(modes, sigma, seed, basis=basis)
