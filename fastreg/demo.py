"""`make demo` / `fastreg demo`: an unregularized and a Roth-regularized NS-GAN, side by side.

Two pairs of runs with the same seed and budget: DCGAN on the bundled ``digits``
(32x32), and MLPs on Roth et al.'s dimensionally misspecified 3-D mixture. Each
pair differs only in the regularizer: none vs Roth's Omega_JS with gamma
annealed from 2.0 by alpha = 0.01 (Roth, Lucchi, Nowozin, Hofmann 2017). The
report ``<out>/report.md`` holds sample grids, loss and gradient-norm curves,
evaluation curves (FID/KID with the held-out digits classifier as extractor; the
toy runs' Wasserstein distance and high-quality fraction) and a table.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, replace

import torch

from . import data
from .metrics import mode_coverage
from .plots import plot_curves
from .train.config import TrainConfig
from .train.metrics_log import read_metrics
from .train.trainer import Trainer

ROTH = {"reg": "roth", "gamma": 2.0, "gamma_anneal": 0.01}
TOY_SAMPLES = 5000
MARKER = ".fastreg-demo.json"  # in the demo's folder: the entries it wrote, the only ones a re-run replaces


class DemoOutputError(ValueError):
    """``--out`` cannot take the demo's output (a file, or a folder holding what the demo did not write)."""


@dataclass
class DemoBudget:
    digits_steps: int = 1500
    toy_steps: int = 2000
    width: int = 32
    resolution: int = 32
    eval_points: int = 5        # evaluations per run, the last at the final step
    eval_samples: int = 1000


QUICK = DemoBudget(digits_steps=4, toy_steps=4, width=8, resolution=8, eval_points=2, eval_samples=100)
DIGITS_EXTRACTOR = "classifier:digits"
EVAL_CURVES = {"digits": [f"fid/{DIGITS_EXTRACTOR}", f"kid/{DIGITS_EXTRACTOR}"],
               "toy3d": ["wasserstein_1", "high_quality"]}
EVAL_CAPTIONS = {
    "digits": f"FID and KID of the EMA generator (features: `{DIGITS_EXTRACTOR}`, the held-out digits classifier; "
              "lower is better):",
    "toy3d": "Exact W1 between generated and mixture samples, and the fraction within 3 sigma of a mode:",
}


def demo_configs(out: str, budget: DemoBudget, seed: int = 0) -> dict[str, TrainConfig]:
    digits = TrainConfig(variant="ns", data="digits", resolution=budget.resolution, width=budget.width,
                         batch_size=64, steps=budget.digits_steps, d_batchnorm=False, seed=seed,
                         log_every=max(1, budget.digits_steps // 60), sample_every=budget.digits_steps,
                         checkpoint_every=budget.digits_steps, keep_checkpoints=1,
                         eval_every=max(1, budget.digits_steps // budget.eval_points),
                         eval_samples=budget.eval_samples, eval_extractor=DIGITS_EXTRACTOR)
    # Roth et al.'s toy set-up: tanh MLPs, Adam 1e-3, batch 512.
    toy = TrainConfig(variant="ns", data="misspecified3d", model="mlp", z_dim=16, batch_size=512, lr_d=1e-3,
                      lr_g=1e-3, steps=budget.toy_steps, seed=seed, log_every=max(1, budget.toy_steps // 60),
                      sample_every=budget.toy_steps, checkpoint_every=budget.toy_steps, keep_checkpoints=1,
                      eval_every=max(1, budget.toy_steps // budget.eval_points), eval_samples=budget.eval_samples)
    runs = {}
    for name, base in (("digits", digits), ("toy3d", toy)):
        runs[f"{name}-ns"] = replace(base, out=os.path.join(out, f"{name}-ns"))
        runs[f"{name}-ns-roth"] = replace(base, out=os.path.join(out, f"{name}-ns-roth"), **ROTH)
    return runs


def run_demo(out: str = "runs/demo", budget: DemoBudget = DemoBudget()) -> str:
    """Train the four runs and write the report into ``out``; returns the report's path.

    ``out`` must be new, empty or a previous demo's folder (see :func:`prepare_output`): the demo replaces
    only what an earlier demo wrote there and never deletes anything else.
    """
    configs = demo_configs(out, budget)
    prepare_output(out, demo_entries(configs))
    results = {}
    for name, config in configs.items():
        start = time.perf_counter()
        trainer = Trainer(config)
        trainer.train()
        results[name] = summarize(trainer, time.perf_counter() - start)
    return write_report(out, results)


def demo_entries(configs: dict[str, TrainConfig]) -> list[str]:
    """The names the demo writes directly under its folder: one folder per run, the report and its figures."""
    figures = [f"{dataset}_{kind}.png" for dataset in ("digits", "toy3d") for kind in ("curves", "evaluation")]
    return [*configs, "report.md", *figures]


def prepare_output(out: str, entries: list[str]) -> None:
    """Make ``out`` ready for the demo's ``entries``: create it, or clear the entries an earlier demo wrote
    there (listed in its :data:`MARKER` file). DemoOutputError when ``out`` is a file or holds anything the
    demo did not write; nothing is deleted then."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise DemoOutputError(f"{out} is a file, not a folder; give a new or empty folder")
    present = sorted(os.listdir(out)) if os.path.isdir(out) else []
    marker = os.path.join(out, MARKER)
    written = []
    if MARKER in present:
        try:
            with open(marker) as f:
                written = list(json.load(f)["entries"])
        except (OSError, ValueError, KeyError, TypeError):
            raise DemoOutputError(f"{marker} is not a demo marker file; give a new or empty folder") from None
    elif present:
        shown = ", ".join(present[:5]) + (f" and {len(present) - 5} more" if len(present) > 5 else "")
        raise DemoOutputError(f"{out} is not empty and holds no earlier demo output ({shown}); the demo never "
                              f"deletes what it did not write: give a new or empty folder")
    for name in written:
        path = os.path.join(out, name)
        if os.path.basename(name) != name or name in ("", ".", ".."):
            continue  # only plain names directly under out
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)
    os.makedirs(out, exist_ok=True)
    with open(marker, "w") as f:
        json.dump({"written_by": "fastreg demo", "entries": sorted(set(entries))}, f, indent=1)


def summarize(trainer: Trainer, seconds: float) -> dict:
    config = trainer.config
    records = read_metrics(config.out)
    last = [r for r in records if "d_loss" in r][-1]
    evaluations = [r for r in records if "eval_seconds" in r]
    summary = {"config": config, "seconds": seconds, "steps_per_second": config.steps / seconds,
               "d_loss": last["d_loss"], "g_loss": last["g_loss"], "d_grad_norm": last["d_grad_norm"],
               "final_eval": evaluations[-1],
               "eval_seconds": trainer.evaluator.setup_seconds + sum(r["eval_seconds"] for r in evaluations)}
    classifier = getattr(trainer.evaluator.extractor, "classifier", None)
    if classifier is not None:
        summary["classifier_accuracy"] = (classifier.held_out_accuracy, classifier.held_out_count)
    if config.model == "mlp":
        mixture = data.get_dataset(config.data, seed=config.seed)
        with torch.no_grad():
            samples = trainer.sample(torch.randn(TOY_SAMPLES, config.z_dim, generator=torch.Generator().manual_seed(7))
                                     .to(trainer.device, trainer.dtype))
        coverage = mode_coverage(samples.float().cpu(), mixture.modes, mixture.sigma)
        summary.update(modes=f"{coverage.modes_covered}/{coverage.n_modes}",
                       high_quality=coverage.high_quality_fraction)
    return summary


def write_report(out: str, results: dict) -> str:
    lines = ["# fastreg demo: NS-GAN with and without Roth et al.'s regularizer", "",
             "Same seed, data and budget in each pair; the regularized run adds (gamma_t/2) Omega_JS with "
             "gamma_t = 2.0 * 0.01^(t/T) (Roth, Lucchi, Nowozin, Hofmann 2017).", ""]
    for dataset in ("digits", "toy3d"):
        pair = {name: r for name, r in results.items() if name.startswith(dataset)}
        runs = {name: r["config"].out for name, r in pair.items()}
        curves = plot_curves(runs, ["d_loss", "g_loss", "d_grad_norm", "g_grad_norm"],
                             os.path.join(out, f"{dataset}_curves.png"), log_y=("d_grad_norm", "g_grad_norm"))
        evaluation = plot_curves(runs, EVAL_CURVES[dataset], os.path.join(out, f"{dataset}_evaluation.png"),
                                 log_y=(f"fid/{DIGITS_EXTRACTOR}",))
        lines += [f"## {'DCGAN on digits' if dataset == 'digits' else 'MLPs on the misspecified 3-D mixture'}", "",
                  f"![curves]({os.path.basename(curves)})", "", EVAL_CAPTIONS[dataset], "",
                  f"![evaluation]({os.path.basename(evaluation)})", ""]
        for name, r in pair.items():
            sample = os.path.join(name, "samples", f"step_{r['config'].steps:06d}.png")
            lines += [f"**{name}** (final samples, EMA generator)", "", f"![{name}]({sample})", ""]
    header = ("| run | steps | wall time (s) | steps/s | final D loss | final G loss | D grad norm | modes "
              f"| high quality | FID[{DIGITS_EXTRACTOR}] | W1 | evaluation time (s) |")
    lines += ["## Summary", "", header, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        final = r["final_eval"]
        lines.append(f"| {name} | {r['config'].steps} | {r['seconds']:.0f} | {r['steps_per_second']:.1f} | "
                     f"{r['d_loss']:.3f} | {r['g_loss']:.3f} | {r['d_grad_norm']:.3g} | {r.get('modes', '-')} | "
                     f"{r['high_quality'] if 'high_quality' in r else float('nan'):.3f} | "
                     f"{final.get(f'fid/{DIGITS_EXTRACTOR}', float('nan')):.2f} | "
                     f"{final.get('wasserstein_1', float('nan')):.4f} | {r['eval_seconds']:.1f} |".replace("nan", "-"))
    lines += ["", "Losses are means over the last logging window; 'modes' counts mixture modes that received at "
              "least 10% of their share of high-quality samples (within 3 sigma) among 5,000 samples. FID and W1 "
              "are the final evaluation's; the evaluation time (set-up included: training the classifier unless "
              "cached, real features) is part of the wall time.", ""]
    accuracy = next((r["classifier_accuracy"] for r in results.values() if "classifier_accuracy" in r), None)
    if accuracy is not None:
        lines += [f"The `{DIGITS_EXTRACTOR}` extractor is fastreg's digits classifier: {accuracy[0]:.1%} accuracy on "
                  f"{accuracy[1]} held-out digits it never trained on. Its FIDs are not comparable with Inception "
                  "FIDs.", ""]
    path = os.path.join(out, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path
