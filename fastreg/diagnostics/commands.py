"""The single diagnostics of ``fastreg diagnose <name>``, each on a trained run's newest checkpoint.

Each writes ``<name>.png`` (the figure) and ``<name>.json`` (the numbers behind it) into ``out``
(default ``RUN_DIR/diagnostics``) and returns both paths:

- :func:`histograms_command`: D-output histograms on real and fake samples (Grewal, Hjelm, Bengio
  2018, figs. 1-2) of the run's D, of that D after ``k`` more D steps against the frozen G, and with
  ``fixed_g`` of a fresh D trained ``d_steps`` against the frozen G with a chosen variant's D loss;
  each with the overlap coefficient of its two histograms.
- :func:`interpolation_command`: mean logit and mean ``||grad_x v||`` of the run's D along
  ``t x_r + (1 - t) G(z)``, t in [-0.5, 1.5], over ``pairs`` real-fake pairs (fig. 3 there).
- :func:`vanishing_command`: Arjovsky & Bottou 2017's experiment (a fresh D against the frozen G,
  G's gradient norms every ``record_every`` D steps), with instance noise as a second curve.
- :func:`cross_test_command`: Roth et al. 2017's cross-test of two runs on the same data.

G and D are copies of the run's networks in training mode, as in :func:`fastreg.diagnostics.diagnose`.
"""

from __future__ import annotations

import copy
import json
import os

import torch

from . import plots
from ..atomic import write_text
from ..train.runs import open_run
from .cross_test import CROSS_SAMPLES
from .discriminator import (RealSampler, check_variant, decision_threshold, generate, logits, output_histograms,
                            train_discriminator)
from .interpolation import PAIRS, interpolation_profile
from .report import DiagnoseOptions, cross_test_runs, fresh_discriminator, vanishing_over_checkpoints


def _load(run_dir: str, device: str | None):
    run = open_run(run_dir, device)
    G, D = (copy.deepcopy(m).train() for m in (run.G, run.D))
    return run, G, D


def _write(out: str, name: str, results: dict, plot) -> tuple[str, str]:
    os.makedirs(out, exist_ok=True)
    png = plot(os.path.join(out, f"{name}.png"))
    path = os.path.join(out, f"{name}.json")
    write_text(path, json.dumps(results, indent=1))
    return png, path


def histograms_command(run_dir: str, out: str | None = None, fixed_g: bool = False, d_steps: int = 500,
                       variant: str | None = None, k: int = 50, samples: int = 1000, seed: int = 0,
                       device: str | None = None) -> tuple[str, str]:
    """Logit histograms (with accuracy and overlap coefficient) of the run's D, of the run's D after ``k``
    more D steps, and with ``fixed_g`` of a fresh D after ``d_steps`` D steps; the D steps minimize
    ``variant``'s D loss (default: the run's variant) against the frozen G. All on the same
    ``samples`` real and generated samples."""
    run, G, D = _load(run_dir, device)
    variant = variant or run.config.variant
    if k > 0 or fixed_g:
        check_variant(variant)
    real = RealSampler(run.dataset, seed)
    rng = torch.Generator().manual_seed(seed)
    x_real, x_fake = real(samples), generate(G, samples, rng)
    discriminators = {"run's D": D}
    if k > 0:
        discriminators[f"run's D + {k} {variant} D steps"] = train_discriminator(copy.deepcopy(D), G, real, k, rng,
                                                                                 variant=variant, desc="run's D")
    if fixed_g:
        torch.manual_seed(seed)
        fresh = train_discriminator(fresh_discriminator(run), G, real, d_steps,
                                    torch.Generator().manual_seed(seed), variant=variant, desc="fresh D")
        discriminators[f"fresh D, {d_steps} {variant} steps (G fixed)"] = fresh
    threshold = decision_threshold(variant, run.config.vral_mu_real, run.config.vral_mu_fake)
    histograms = {label: output_histograms(logits(d, x_real), logits(d, x_fake), threshold=threshold)
                  for label, d in discriminators.items()}
    results = {"run": run_dir, "step": run.step, "variant": variant,
               "options": {"fixed_g": fixed_g, "d_steps": d_steps, "k": k, "samples": samples, "seed": seed},
               "histograms": histograms}
    return _write(out or os.path.join(run_dir, "diagnostics"), "histograms", results,
                  lambda path: plots.plot_histograms(histograms, path))


def interpolation_command(run_dir: str, out: str | None = None, pairs: int = PAIRS, seed: int = 0,
                          device: str | None = None) -> tuple[str, str]:
    """The run's D along ``pairs`` lines from generated to real samples (:func:`interpolation_profile`)."""
    if pairs < 1:
        raise ValueError(f"pairs: must be >= 1, got {pairs}")
    run, G, D = _load(run_dir, device)
    real = RealSampler(run.dataset, seed)
    x_real, x_fake = real(pairs), generate(G, pairs, torch.Generator().manual_seed(seed))
    profiles = {"run's D": interpolation_profile(D, x_real, x_fake)}
    results = {"run": run_dir, "step": run.step, "options": {"pairs": pairs, "seed": seed},
               "interpolation": profiles}
    return _write(out or os.path.join(run_dir, "diagnostics"), "interpolation", results,
                  lambda path: plots.plot_interpolation(profiles, path))


def vanishing_command(run_dir: str, out: str | None = None, d_steps: int = 500, record_every: int = 25,
                      noise: float = 0.0, all_checkpoints: bool = False, seed: int = 0,
                      device: str | None = None) -> tuple[str, str]:
    """G's gradient norms under a fresh D (:func:`vanishing_gradients`) for the newest (or every kept)
    checkpoint's G; with ``noise`` > 0 each G is run twice, without and with instance noise sigma = ``noise``,
    and both curves share the log-scale plot."""
    if not noise >= 0:
        raise ValueError(f"noise: must be >= 0, got {noise}")
    run, G, _ = _load(run_dir, device)
    o = DiagnoseOptions(d_steps=d_steps, record_every=record_every, all_checkpoints=all_checkpoints, seed=seed,
                        noise=noise)
    runs, _ = vanishing_over_checkpoints(run, G, RealSampler(run.dataset, seed), o)
    results = {"run": run_dir, "step": run.step,
               "options": {"d_steps": d_steps, "record_every": record_every, "noise": noise,
                           "all_checkpoints": all_checkpoints, "seed": seed},
               "vanishing_gradients": {label: [r._asdict() for r in records] for label, records in runs.items()}}
    return _write(out or os.path.join(run_dir, "diagnostics"), "vanishing", results,
                  lambda path: plots.plot_vanishing(runs, path))


def cross_test_command(run_a: str, run_b: str, out: str | None = None, samples: int = CROSS_SAMPLES, seed: int = 0,
                       device: str | None = None) -> tuple[str, str]:
    """Roth's cross-test of runs A and B (same data, else ValueError naming ``RUN_B``): each D's confusion
    matrix on real samples and its own generator's ``samples`` samples, and each D's cross false-positive
    rate on the other generator's samples."""
    if samples < 1:
        raise ValueError(f"samples: must be >= 1, got {samples}")
    run, G, D = _load(run_a, device)
    other = open_run(run_b, device)
    result = cross_test_runs(run, G, D, other, DiagnoseOptions(cross_samples=samples, seed=seed),
                             argument="RUN_B")
    results = {"run_a": run_a, "run_b": run_b, "step_a": run.step, "step_b": other.step,
               "options": {"samples": samples, "seed": seed}, "cross_test": result}
    return _write(out or os.path.join(run_a, "diagnostics"), "cross-test", results,
                  lambda path: plots.plot_cross_test(result, (run_a, run_b), path))
