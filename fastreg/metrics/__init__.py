"""Sample-quality metrics.

- Toy mixtures: :func:`mode_coverage`, :func:`wasserstein_distance` (:mod:`.toy`).
- FID and KID on features: :func:`frechet_distance`, :func:`kid` (:mod:`.fid`), the feature
  extractors that name every result (:mod:`.extractors`; the cached dataset classifier in :mod:`.classifier`),
  and the evaluation of a generator against its data (:mod:`.evaluation`).
"""

from .fid import KID, Frechet, GaussianStats, frechet_distance, gaussian_frechet, kid
from .toy import ModeCoverage, mode_coverage, wasserstein_distance

__all__ = ["KID", "Frechet", "GaussianStats", "ModeCoverage", "frechet_distance", "gaussian_frechet", "kid",
           "mode_coverage", "wasserstein_distance"]
