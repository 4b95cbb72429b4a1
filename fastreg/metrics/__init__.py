"""Sample-quality metrics. Toy mixtures: :func:`mode_coverage`."""

from .toy import ModeCoverage, mode_coverage

__all__ = ["ModeCoverage", "mode_coverage"]
