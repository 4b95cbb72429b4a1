"""Independent runs of an experiment trained in worker processes, resumable: each finished run leaves
``outcome.json`` in its folder (written atomically), and a re-run of the same experiment reuses every outcome whose
``fastreg train`` command is unchanged, training only the rest. Progress: runs done / total with an ETA.

A task is a dict with at least ``name`` (unique) and ``config`` (its :class:`fastreg.train.config.TrainConfig`);
``work(task) -> outcome`` (a module-level function, so spawned workers can import it) trains and measures it and
returns a JSON-able dict holding ``name`` and ``command`` (:func:`fastreg.experiments.runs.command` of the config),
which it writes with :func:`write_outcome`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Callable

from ..atomic import write_text
from ..train.config import from_dict
from ..train.metrics_log import jsonable
from .runs import Run, command

OUTCOME = "outcome.json"


def write_json(path: str, value) -> None:
    """``value`` as JSON at ``path``, atomically (:func:`fastreg.atomic.write_text`: a temporary file in the same
    folder, fsync, rename)."""
    write_text(path, json.dumps(jsonable(value), indent=1))


def write_outcome(config, outcome: dict) -> None:
    write_json(os.path.join(config.out, OUTCOME), outcome)


def finished_outcome(config) -> dict | None:
    """The outcome a killed or earlier experiment left for this exact run (same command), else None."""
    try:
        with open(os.path.join(config.out, OUTCOME)) as f:
            outcome = json.load(f)
    except (OSError, ValueError):
        return None
    return outcome if outcome.get("command") == command(config) else None


def run_tasks(tasks: list[dict], jobs: int, label: str, work: Callable[[dict], dict]) -> list[dict]:
    """Every task's outcome in task order (finished ones reused), ``jobs`` spawned processes at a time (1: in this
    process), with runs done / total and an ETA (a tqdm bar, or one line per run without a terminal)."""
    from tqdm.auto import tqdm

    outcomes = {t["name"]: finished_outcome(t["config"]) for t in tasks}
    todo = [t for t in tasks if outcomes[t["name"]] is None]
    bar = tqdm(total=len(tasks), initial=len(tasks) - len(todo), desc=label, unit="run", disable=None)
    start, done = time.perf_counter(), 0

    def finished(outcome: dict) -> None:
        nonlocal done
        outcomes[outcome["name"]] = outcome
        done += 1
        bar.update(1)
        if bar.disable:  # no terminal: one line per run instead of a bar
            elapsed = time.perf_counter() - start
            eta = elapsed / done * (len(todo) - done)
            print(f"{label}: {len(tasks) - len(todo) + done}/{len(tasks)} runs, {elapsed / 60:.1f} min, "
                  f"ETA {eta / 60:.1f} min ({outcome['name']})", file=sys.stderr, flush=True)

    if jobs <= 1:
        for task in todo:
            finished(work(task))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            for future in as_completed([pool.submit(work, t) for t in todo]):
                finished(future.result())
    bar.close()
    return [outcomes[t["name"]] for t in tasks]


def as_run(outcome: dict) -> Run:
    """The report's :class:`Run` of an outcome (its ``summary`` and ``config``)."""
    s = outcome["summary"]
    return Run(outcome["name"], from_dict(outcome["config"]), float(s["seconds"]), s["diverged"], s["evaluations"])
