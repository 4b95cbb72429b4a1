"""Statistical checks shared by the random-op tests.

Each check compares a sample statistic with its exact value under the claimed
distribution and allows 4 standard errors (two-sided: a false alarm rate of
about 6e-5 per check for a correct generator). Tests run with fixed seeds, so
a pass or fail is reproducible.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

SE_BOUND = 4.0
KS_ALPHA = 1e-3


def as_numpy(t) -> np.ndarray:
    return t.detach().double().cpu().numpy().reshape(-1)


def assert_within(name: str, value: float, expected: float, standard_error: float) -> None:
    assert abs(value - expected) < SE_BOUND * standard_error, (
        f"{name} = {value:.6g}, expected {expected:.6g} within {SE_BOUND} x {standard_error:.3g}")


def assert_standard_normal(z: np.ndarray) -> None:
    """Mean 0, variance 1, two-sided 3-sigma tail mass, and a KS test against N(0, 1)."""
    n = z.size
    assert np.isfinite(z).all()
    assert_within("mean", z.mean(), 0.0, 1 / math.sqrt(n))
    assert_within("variance", z.var(ddof=1), 1.0, math.sqrt(2 / (n - 1)))  # Var(s^2) = 2/(n-1) for normals
    tail = 2 * stats.norm.sf(3.0)
    assert_within("P(|z| > 3)", np.mean(np.abs(z) > 3.0), tail, math.sqrt(tail * (1 - tail) / n))
    p = stats.kstest(z, "norm").pvalue
    assert p > KS_ALPHA, f"Kolmogorov-Smirnov rejects N(0, 1): p = {p:.3g}"


def assert_standard_uniform(u: np.ndarray) -> None:
    """Support [0, 1), mean 1/2, variance 1/12, and a KS test against U[0, 1]."""
    n = u.size
    assert u.min() >= 0.0 and u.max() < 1.0
    assert_within("mean", u.mean(), 0.5, math.sqrt(1 / 12 / n))
    # Var(s^2) ~ (mu_4 - sigma^4)/n with mu_4 = 1/80, sigma^2 = 1/12.
    assert_within("variance", u.var(ddof=1), 1 / 12, math.sqrt((1 / 80 - 1 / 144) / n))
    p = stats.kstest(u, "uniform").pvalue
    assert p > KS_ALPHA, f"Kolmogorov-Smirnov rejects U[0, 1]: p = {p:.3g}"


def assert_uncorrelated(name: str, a: np.ndarray, b: np.ndarray) -> None:
    """Pearson correlation of paired samples within 4/sqrt(n) of 0 (its standard error under independence)."""
    r = np.corrcoef(a, b)[0, 1]
    assert_within(f"corr({name})", r, 0.0, 1 / math.sqrt(a.size))


def assert_no_serial_dependence(x: np.ndarray, rows: int) -> None:
    """No correlation between elements 1..8 apart (within and across Philox blocks), between
    consecutive rows of x viewed as [rows, -1], or between squares of neighbours (dependence
    that a linear correlation misses, e.g. within a Box-Muller pair)."""
    for lag in range(1, 9):
        assert_uncorrelated(f"x[e], x[e + {lag}]", x[:-lag], x[lag:])
    grid = x.reshape(rows, -1)
    assert_uncorrelated("row i, row i + 1", grid[:-1].reshape(-1), grid[1:].reshape(-1))
    centred = x - x.mean()
    squares = centred * centred
    for lag in range(1, 5):
        assert_uncorrelated(f"x[e]^2, x[e + {lag}]^2", squares[:-lag], squares[lag:])
