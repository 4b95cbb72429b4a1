"""``fastreg experiment NAME|all``: reproductions of the source papers' claims, each with a report.

Every experiment trains with :class:`fastreg.train.Trainer` and measures with :mod:`fastreg.metrics`
and :mod:`fastreg.diagnostics`, then writes ``<out>/<NAME>/report.md`` (settings, the claims table,
PNG figures, a ``fastreg train`` command per run) and ``metrics.json`` (every number). The size of
everything is one :class:`~fastreg.experiments.budget.Scale` (tiny, quick, cpu, full); the code is the same.

Modules: :mod:`.roth` (roth-stability, roth-cross-test, roth-toy, explicit-noise), :mod:`.stability_grid`
(roth-stability-grid, its failure rule in :mod:`.failure_rule`), :mod:`.stacked_mnist` (stacked-mnist,
mode coverage), :mod:`.parallel_runs` (resumable runs in worker processes), :mod:`.arjovsky`
(arjovsky-vanishing), :mod:`.vral`, :mod:`.tempered`; :mod:`.claims` (verdict rules),
:mod:`.report` (reports and index), :mod:`.runs` (training runs and their commands),
:mod:`.figures`, :mod:`.budget` (scales).
"""

from __future__ import annotations

import os
import time

from .budget import CPU, FULL, QUICK, SCALES, TINY, Scale
from .claims import Claim
from .report import Report, write_index


def _registry() -> dict:
    from . import arjovsky, roth, roth_toy, stability_grid, stacked_mnist, tempered, vral

    return {"roth-stability": roth.stability, "roth-stability-grid": stability_grid.stability_grid,
            "stacked-mnist": stacked_mnist.stacked_mnist,
            "roth-cross-test": roth.cross, "roth-toy": roth_toy.toy, "explicit-noise": roth.explicit_noise,
            "arjovsky-vanishing": arjovsky.vanishing, "vral": vral.vral, "tempered": tempered.tempered}


EXPERIMENTS = ("roth-stability", "roth-stability-grid", "roth-cross-test", "roth-toy", "explicit-noise",
               "arjovsky-vanishing", "vral", "tempered", "stacked-mnist")
PARALLEL = ("roth-stability-grid", "stacked-mnist")   # the experiments whose runs --jobs spreads over processes
# Experiments whose declared protocol fixes the dataset (--data must be this one or absent).
FIXED_DATA = {"roth-stability-grid": "mnist-5k", "stacked-mnist": "stacked-mnist-5k"}


def check_name(name: str) -> None:
    if name != "all" and name not in EXPERIMENTS:
        raise ValueError(f"experiment: unknown name {name!r}; expected all or one of {', '.join(EXPERIMENTS)}")


def run_experiment(name: str, out: str = "runs/experiments", scale: Scale = QUICK, data: str = "digits",
                   jobs: int = 1) -> Report:
    """Run one experiment into ``out/name`` and write its report; returns the report (``.out`` its folder).
    ``jobs``: processes at a time for the experiments of :data:`PARALLEL` (the others run in this one)."""
    check_name(name)
    if name == "all":
        raise ValueError("experiment: use run_all for 'all'")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs: must be a positive int, got {jobs!r}")
    options = {"jobs": jobs} if name in PARALLEL else {}
    report = _registry()[name](os.path.join(out, name), scale, data, **options)
    report.write()
    return report


def run_all(out: str = "runs/experiments", scale: Scale = QUICK, data: str = "digits",
            names: tuple[str, ...] = EXPERIMENTS, jobs: int = 1) -> tuple[list[Report], str]:
    """Every experiment (in order), then ``out/index.md``; returns the reports and the index's path."""
    start = time.perf_counter()
    reports = []
    for name in names:
        print(f"fastreg experiment: {name} ({scale.name})", flush=True)
        reports.append(run_experiment(name, out, scale, data, jobs))
    index = write_index(out, reports, time.perf_counter() - start, scale, data)
    return reports, index


__all__ = ["CPU", "EXPERIMENTS", "FIXED_DATA", "FULL", "QUICK", "SCALES", "TINY", "Claim", "Report", "Scale",
           "check_name", "run_all", "run_experiment"]
