"""When a GAN run *fails*, and whether a regularizer makes failures rarer: the stability grid's rules.

Declared before any run of the grid (:mod:`fastreg.experiments.stability_grid`), in words and in code:

**A run fails** (:func:`failure`) when any of these holds, checked in this order:

1. *non-finite*: training stopped on a non-finite value, or the final FID is not finite;
2. *far from the data*: its final FID is above the threshold :math:`\\tau`, a number computed from the data
   alone before any GAN is trained (:func:`fastreg.experiments.stability_grid.data_thresholds`): the FID of the
   held-out real digits with Gaussian pixel noise of std :data:`NOISE_SIGMA` (10% of the [-1, 1] range) against
   the training digits, at the evaluation's sample count;
3. *collapsed*: its samples cover fewer than :data:`MIN_CLASSES` of the 10 classes, a class being covered when
   the data's classifier labels at least :data:`MIN_CLASS_SHARE` of the samples as that class (a fifth of the
   share a uniform generator gives it).

**The verdict** (:func:`grid_claims`): with the unregularized failure rate :math:`p_0` and the regularized one
:math:`p_1` over the same cells and seeds, Roth's claim holds when :math:`p_1 \\le p_0 / 3`, decided only when
:math:`p_0 \\ge 1/4` (the regime gate: there must be failures to rescue). Printed beside it: the two-sided exact
McNemar test on the paired runs (same cell, same seed; :func:`mcnemar_exact`) and a 95% bootstrap interval of
:math:`p_0 - p_1` resampling the cells (a cell's seeds stay together; :func:`bootstrap_difference`). A second
claim asks for the difference to be beyond chance: McNemar's p below :data:`ALPHA`.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from .claims import Claim, fmt, gate

NOISE_SIGMA = 0.2        # tau: the held-out digits with this much pixel noise
MIN_CLASSES = 8          # a run covering fewer classes collapsed
MIN_CLASS_SHARE = 0.02   # ... a class is covered by at least this fraction of the samples
REDUCTION = 3            # the claim: the regularized failure rate at most 1/REDUCTION of the unregularized one
REGIME = 0.25            # the gate: the unregularized GAN fails in at least this fraction of the runs
ALPHA = 0.05
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0


def classes_covered(predicted: torch.Tensor, classes: int = 10, share: float = MIN_CLASS_SHARE) -> int:
    """How many of ``classes`` receive at least ``share`` of the predicted labels ``predicted`` [N]."""
    counts = torch.bincount(predicted.flatten().long(), minlength=classes)[:classes]
    return int((counts >= share * predicted.numel()).sum())


def failure(diverged: str | None, final_fid: float, covered: int | None, threshold: float) -> str | None:
    """Why a run failed (the first rule of the module's list that applies), or None when it did not."""
    if diverged:
        return f"non-finite ({diverged})"
    if not math.isfinite(final_fid):
        return "non-finite FID"
    if final_fid > threshold:
        return f"FID {fmt(final_fid, 3)} > {fmt(threshold, 3)}"
    if covered is not None and covered < MIN_CLASSES:
        return f"collapsed ({covered} of 10 classes)"
    return None


def mcnemar_exact(pairs: Sequence[tuple[bool, bool]]) -> float:
    """Two-sided exact McNemar p-value of paired failures ``(unregularized failed, regularized failed)``: a
    binomial test of the discordant pairs (b: only the unregularized failed, c: only the regularized) against
    1/2; 1.0 with no discordant pair."""
    b = sum(1 for u, r in pairs if u and not r)
    c = sum(1 for u, r in pairs if r and not u)
    if b + c == 0:
        return 1.0
    k, n = min(b, c), b + c
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def bootstrap_difference(cells: Sequence[Sequence[tuple[bool, bool]]], resamples: int = BOOTSTRAP_RESAMPLES,
                         seed: int = BOOTSTRAP_SEED, level: float = 0.95) -> tuple[float, float]:
    """The ``level`` percentile interval of (unregularized - regularized failure rate), resampling ``cells`` (each
    a list of paired outcomes over seeds) with replacement, ``resamples`` times (seeded)."""
    if not cells:
        return math.nan, math.nan
    diffs = torch.tensor([sum(int(u) - int(r) for u, r in cell) for cell in cells], dtype=torch.float64)
    sizes = torch.tensor([len(cell) for cell in cells], dtype=torch.float64)
    pick = torch.randint(len(cells), (resamples, len(cells)), generator=torch.Generator().manual_seed(seed))
    stats = diffs[pick].sum(1) / sizes[pick].sum(1)
    low, high = torch.quantile(stats, torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64))
    return float(low), float(high)


def grid_claims(pairs: Sequence[tuple[bool, bool]], cells: Sequence[Sequence[tuple[bool, bool]]],
                seeds: list[int]) -> list[Claim]:
    """The grid's two claims from the paired outcomes (``pairs``: every (cell, seed); ``cells``: the same grouped
    by cell), gated on the unregularized failure rate (:data:`REGIME`)."""
    n = len(pairs)
    p0 = sum(u for u, _ in pairs) / n if n else math.nan
    p1 = sum(r for _, r in pairs) / n if n else math.nan
    p_value = mcnemar_exact(pairs)
    low, high = bootstrap_difference(cells)
    stats = (f"failure rate unregularized {sum(u for u, _ in pairs)}/{n} = {fmt(p0, 3)}, regularized "
             f"{sum(r for _, r in pairs)}/{n} = {fmt(p1, 3)}; difference {fmt(p0 - p1, 3)}, 95% bootstrap interval "
             f"[{fmt(low, 3)}, {fmt(high, 3)}] (cells resampled); exact McNemar p = {fmt(p_value, 3)}")
    rescued = "held" if n and p1 <= p0 / REDUCTION else "not held"
    beyond = "held" if n and p1 < p0 and p_value < ALPHA else "not held"
    claims = [
        Claim("Roth's regularizer rescues failing runs: one setting (gamma0=2 annealed) fails at most a third as "
              "often as the unregularized NS-GAN across architectures and optimizer settings",
              "the regularized GAN trains stably where the unregularized one fails", stats, seeds, rescued,
              f"regularized failure rate <= unregularized / {REDUCTION} over the same (cell, seed) runs; decided "
              f"only when the unregularized GAN fails in at least {REGIME:.0%} of them."),
        Claim("The reduction in failures is beyond chance", "(implied by the paper's figures)", stats, seeds, beyond,
              f"regularized failure rate lower and the two-sided exact McNemar test on the paired runs at p < "
              f"{ALPHA}; decided only under the same gate."),
    ]
    reached = n > 0 and p0 >= REGIME
    reason = (f"regime not reached: the unregularized GAN failed in {fmt(p0, 3)} of the runs (gate: at least "
              f"{REGIME}), so there is little to rescue at this budget")
    return gate(claims, reached, reason)
