"""Claims and the rules that decide them.

A claim pairs a statement from a source paper with what fastreg measured and a verdict that a
rule written in code decides from the measured numbers: ``held``, ``not held`` or
``inconclusive`` (a number the rule needs is missing or not finite, e.g. every run of a
comparison diverged, or the run did not reach the regime the claim is about). The rules are pure
functions of numbers, so they can be checked on hand-made values, and they are fixed before any
run: no tuning per seed to make a claim pass.

**Regime gates.** A claim about what happens in some regime (a D that rejects its own fakes, an
unregularized GAN that fails, a lens that has returned to the identity, a trained baseline) is only
decided when the run reached it: :func:`gate` turns the would-be verdict into ``inconclusive`` with the
reason, which the claims table prints next to the verdict.

**Seeds and margins.** Comparisons of final FIDs over seeds (:func:`better_beyond_spread`) call one
side better only when its mean is lower by more than the seed spread (the larger sample standard
deviation of the two sides) measured in the same run.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

HELD, NOT_HELD, INCONCLUSIVE = "held", "not held", "inconclusive"
VERDICTS = (HELD, NOT_HELD, INCONCLUSIVE)
TABLE_HEADER = "| claim | paper | measured | seeds | held |"
TABLE_RULE = "|---|---|---|---|---|"


@dataclass
class Claim:
    """One row of a claims table. ``rule`` states in words how ``held`` was decided."""

    claim: str
    paper: str
    measured: str
    seeds: Sequence[int]
    held: str
    rule: str
    reason: str = ""   # why a verdict is inconclusive (a regime gate), or why not held, in one line

    def __post_init__(self):
        if self.held not in VERDICTS:
            raise ValueError(f"held: expected one of {', '.join(VERDICTS)}, got {self.held!r}")

    def row(self) -> str:
        seeds = ", ".join(str(s) for s in self.seeds)
        verdict = f"**{self.held}**" + (f" ({self.reason})" if self.reason else "")
        cells = [self.claim, self.paper, self.measured, seeds, verdict]
        return "| " + " | ".join(c.replace("|", "/").replace("\n", " ") for c in cells) + " |"

    def as_dict(self) -> dict:
        data = asdict(self)
        data["seeds"] = list(self.seeds)
        return data


def claims_table(claims: Iterable[Claim]) -> list[str]:
    """The markdown lines of a claims table, then the rule behind each verdict."""
    claims = list(claims)
    lines = [TABLE_HEADER, TABLE_RULE, *(c.row() for c in claims), ""]
    lines += [f"{i}. Rule for row {i}: {c.rule}" for i, c in enumerate(claims, 1)]
    return lines


def finite(*values: float | None) -> bool:
    return all(v is not None and isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def at_least(outcomes: Sequence[bool | None], k: int) -> str:
    """Held when at least ``k`` outcomes are True. ``None`` outcomes (not decidable) count as failures,
    unless so many are undecidable that the decided ones cannot settle it either way: inconclusive."""
    if k < 1:
        raise ValueError(f"k: must be at least 1, got {k}")
    wins = sum(1 for o in outcomes if o is True)
    undecided = sum(1 for o in outcomes if o is None)
    if wins >= k:
        return HELD
    if wins + undecided >= k:
        return INCONCLUSIVE
    return NOT_HELD


def lower(a: float | None, b: float | None, margin: float = 0.0) -> bool | None:
    """``a < b - margin`` (a non-finite ``b`` with a finite ``a`` counts as ``a`` lower: a diverged run
    loses); None when ``a`` is not finite and ``b`` is not either."""
    a_ok, b_ok = finite(a), finite(b)
    if a_ok and b_ok:
        return a < b - margin
    if a_ok and not b_ok:
        return True
    if b_ok and not a_ok:
        return False
    return None


def majority(outcomes: Sequence[bool | None]) -> str:
    """Held when more than half of the outcomes are True."""
    return at_least(outcomes, len(outcomes) // 2 + 1) if outcomes else INCONCLUSIVE


def all_of(outcomes: Sequence[bool | None]) -> str:
    return at_least(outcomes, len(outcomes)) if outcomes else INCONCLUSIVE


def fmt(value: float | None, digits: int = 4) -> str:
    """A number for a table: 4 significant digits; '-' when missing (None or NaN: e.g. a finished run
    without an FID); 'diverged' for inf (:meth:`fastreg.experiments.runs.Run.final` of a diverged run)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if not math.isfinite(value):
        return "diverged"
    return f"{value:.{digits}g}"


def gate(claims: list[Claim], reached: bool, reason: str) -> list[Claim]:
    """The claims as they are when ``reached``; otherwise each one inconclusive, ``reason`` saying which regime
    the run did not reach (the would-be verdict is dropped: it does not measure the claim)."""
    if reached:
        return claims
    for c in claims:
        c.held, c.reason = INCONCLUSIVE, reason
    return claims


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample standard deviation) over seeds; a diverged (inf) run makes the mean inf, the std is over
    the finite values (NaN with fewer than 2)."""
    import statistics

    if not values:
        return math.nan, math.nan
    ok = [v for v in values if finite(v)]
    std = statistics.stdev(ok) if len(ok) > 1 else math.nan
    if len(ok) < len(values):
        return math.inf, std
    return statistics.fmean(ok), std


MIN_SEEDS = 3   # a spread over seeds needs at least this many


def better_beyond_spread(a: Sequence[float], b: Sequence[float]) -> bool | None:
    """``a`` (values over seeds, lower is better) beats ``b`` by more than the seed spread: mean(a) < mean(b) -
    max(std(a), std(b)). A side with a diverged seed has an infinite mean (it loses to a finite one). None
    (undecidable) with fewer than :data:`MIN_SEEDS` seeds a side or when both means are infinite."""
    if min(len(a), len(b)) < MIN_SEEDS:
        return None
    (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
    margin = max((s for s in (sa, sb) if finite(s)), default=0.0)
    return lower(ma, mb, margin)


def spread_text(values: Sequence[float]) -> str:
    """``mean ± std`` over seeds for a table."""
    m, s = mean_std(values)
    return fmt(m) + (f" ± {fmt(s, 2)}" if finite(s) else "")


def fid_fell(curve: Sequence[tuple[int, float]]) -> bool:
    """A run trained: at least two evaluations ``(step, FID)``, the last finite and lower than the first."""
    values = [v for _, v in curve]
    return len(values) >= 2 and finite(values[-1]) and values[-1] < values[0]
