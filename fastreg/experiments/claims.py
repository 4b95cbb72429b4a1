"""Claims and the rules that decide them.

A claim pairs a statement from a source paper with what fastreg measured and a verdict that a
rule written in code decides from the measured numbers: ``held``, ``not held`` or
``inconclusive`` (a number the rule needs is missing or not finite, e.g. every run of a
comparison diverged). The rules are pure functions of numbers, so they can be checked on
hand-made values, and they are fixed before any run: no tuning per seed to make a claim pass.
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

    def __post_init__(self):
        if self.held not in VERDICTS:
            raise ValueError(f"held: expected one of {', '.join(VERDICTS)}, got {self.held!r}")

    def row(self) -> str:
        seeds = ", ".join(str(s) for s in self.seeds)
        cells = [self.claim, self.paper, self.measured, seeds, f"**{self.held}**"]
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
    """A number for a table: 4 significant digits, '-' when missing, 'diverged' for inf/NaN."""
    if value is None:
        return "-"
    if not math.isfinite(value):
        return "diverged"
    return f"{value:.{digits}g}"
