"""Sample-quality metrics.

- Toy mixtures: :func:`mode_coverage`, :func:`wasserstein_distance` (:mod:`.toy`).
- FID and KID on features (:mod:`.fid`), the feature extractors that name every result
  (:mod:`.extractors`; the cached dataset classifier in :mod:`.classifier`), and the evaluation of
  a generator against its data (:mod:`.evaluation`).
"""

from .fid import KID, fid_from_features, frechet_distance, gaussian_fit, kid_from_features
from .toy import ModeCoverage, mode_coverage, wasserstein_distance

__all__ = ["KID", "ModeCoverage", "fid_from_features", "frechet_distance", "gaussian_fit", "kid_from_features",
           "mode_coverage", "wasserstein_distance"]
