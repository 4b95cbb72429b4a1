"""`make demo` / `fastreg demo`: an unregularized and a Roth-regularized NS-GAN, side by side, over seeds.

Two comparisons, each on several seeds with the same budget: DCGAN on the bundled ``digits``
(32x32), and MLPs on Roth et al.'s dimensionally misspecified 3-D mixture. The two sides of
each comparison differ only in the regularizer: none vs Roth's Omega_JS with gamma annealed
from 2.0 by alpha = 0.01 (Roth, Lucchi, Nowozin, Hofmann 2017); both sides run the same seeds.
The report ``<out>/report.md`` states, per comparison, both sides' settings (read from each
run's resolved config), the seeds, a one-line verdict (the rule: :func:`verdict`), loss and
gradient-norm curves and evaluation curves (mean over seeds, band: min to max), the final
samples of the EMA generator (toy: projected onto the mixture's plane) and a table of every
run with the mean and standard deviation over seeds.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from dataclasses import dataclass, replace

import torch

from . import data
from .regularizer_table import REGULARIZERS
from .plots import metric_label, plot_mixture_plane, plot_seed_curves
from .train.config import TrainConfig
from .train.metrics_log import read_metrics
from .train.trainer import Trainer

ROTH = REGULARIZERS["roth"].preset(annealed=True)  # gamma0 = 2.0 annealed by alpha = 0.01 (Roth et al. 2017)
METHODS = {"ns": {}, "ns-roth": ROTH}
TOY_SCATTER_SAMPLES = 2000  # generated points in the toy's plane picture
MARKER = ".fastreg-demo.json"  # in the demo's folder: the entries it wrote, the only ones a re-run replaces


class DemoOutputError(ValueError):
    """``--out`` cannot take the demo's output (a file, or a folder holding what the demo did not write)."""


@dataclass
class DemoBudget:
    """The demo's budget. Three seeds per side. Digits: a third of the former single seed's 1,500 steps each,
    so the digits runs, which take nearly all of the demo's time, keep their total (about 30 s per run on an
    idle 2-core CPU; FID[classifier:digits] about 12 at 500 steps). Toy: the former 2,000 steps each (700
    covered no mode, 2,000 covered 5 of 7 for seed 0; a toy run takes 10 to 20 s), which adds one to two
    minutes."""

    digits_steps: int = 500
    toy_steps: int = 2000
    seeds: tuple[int, ...] = (0, 1, 2)
    width: int = 32
    resolution: int = 32
    eval_points: int = 3        # evaluations per run, the last at the final step
    eval_samples: int = 1000


QUICK = DemoBudget(digits_steps=4, toy_steps=4, seeds=(0, 1), width=8, resolution=8, eval_points=2,
                   eval_samples=100)
DIGITS_EXTRACTOR = "classifier:digits"
DATASETS = {"digits": "DCGAN on digits", "toy3d": "MLPs on the misspecified 3-D mixture"}
FINAL_METRIC = {"digits": f"fid/{DIGITS_EXTRACTOR}", "toy3d": "wasserstein_1"}  # the verdict's; lower is better
EVAL_CURVES = {"digits": [f"fid/{DIGITS_EXTRACTOR}", f"kid/{DIGITS_EXTRACTOR}"],
               "toy3d": ["wasserstein_1", "high_quality"]}


def run_name(dataset: str, method: str, seed: int) -> str:
    return f"{dataset}-{method}-seed{seed}"


def demo_configs(out: str, budget: DemoBudget) -> dict[str, TrainConfig]:
    """Every run of the demo by name (:func:`run_name`): per dataset, method and seed."""
    # The DCGAN D of Radford et al. and of Roth et al.'s code, batch norm included, on both sides: the
    # regularized run differs only in the regularizer (its penalty runs D on the real and the fake batch in
    # separate forwards, as the authors' code and as the unregularized D step do).
    digits = TrainConfig(variant="ns", data="digits", resolution=budget.resolution, width=budget.width,
                         batch_size=64, steps=budget.digits_steps, d_norm="batch",
                         log_every=max(1, budget.digits_steps // 60), sample_every=budget.digits_steps,
                         checkpoint_every=budget.digits_steps, keep_checkpoints=1,
                         eval_every=max(1, budget.digits_steps // budget.eval_points),
                         eval_samples=budget.eval_samples, eval_extractor=DIGITS_EXTRACTOR)
    # Roth et al.'s toy set-up: tanh MLPs, Adam 1e-3, batch 512.
    toy = TrainConfig(variant="ns", data="misspecified3d", model="mlp", z_dim=16, batch_size=512, lr_d=1e-3,
                      lr_g=1e-3, steps=budget.toy_steps, log_every=max(1, budget.toy_steps // 60),
                      sample_every=budget.toy_steps, checkpoint_every=budget.toy_steps, keep_checkpoints=1,
                      eval_every=max(1, budget.toy_steps // budget.eval_points), eval_samples=budget.eval_samples)
    runs = {}
    for dataset, base in (("digits", digits), ("toy3d", toy)):
        for method, fields in METHODS.items():
            for seed in budget.seeds:
                name = run_name(dataset, method, seed)
                runs[name] = replace(base, out=os.path.join(out, name), seed=seed, **fields)
    return runs


def run_demo(out: str = "runs/demo", budget: DemoBudget | None = None) -> str:
    """Train every run and write the report into ``out``; returns the report's path.

    ``out`` must be new, empty or a previous demo's folder (see :func:`prepare_output`): the demo replaces
    only what an earlier demo wrote there and never deletes anything else.
    """
    budget = DemoBudget() if budget is None else budget
    configs = demo_configs(out, budget)
    prepare_output(out, demo_entries(configs))
    results = {}
    for name, config in configs.items():
        start = time.perf_counter()
        trainer = Trainer(config)
        trainer.train()
        results[name] = summarize(trainer, time.perf_counter() - start)
    return write_report(out, results, budget)


def demo_entries(configs: dict[str, TrainConfig]) -> list[str]:
    """The names the demo writes directly under its folder: one folder per run, the report and its figures."""
    figures = [f"{dataset}_{kind}.png" for dataset in DATASETS for kind in ("curves", "evaluation")]
    figures.append("toy3d_plane.png")
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
    """A finished run's numbers for the report: final losses, the final evaluation, timings; digits: the
    real-data floor and the classifier's held-out accuracy; toy: samples for the plane picture."""
    config = trainer.config
    records = read_metrics(config.out)
    last = [r for r in records if "d_loss" in r][-1]
    evaluations = [r for r in records if "eval_seconds" in r]
    summary = {"config": config, "seconds": seconds, "steps_per_second": config.steps / seconds,
               "d_loss": last["d_loss"], "g_loss": last["g_loss"], "d_grad_norm": last["d_grad_norm"],
               "final_eval": evaluations[-1], "ema_decay": trainer.ema_decay(),
               "eval_seconds": trainer.evaluator.setup_seconds + sum(r["eval_seconds"] for r in evaluations)}
    classifier = getattr(trainer.evaluator.extractor, "classifier", None)
    if classifier is not None:
        summary["classifier_accuracy"] = (classifier.held_out_accuracy, classifier.held_out_count)
        summary["real_floor"] = trainer.evaluator.real_floor()
        summary["real_count"] = len(trainer.evaluator.real_features)
    if config.model == "mlp":
        z = torch.randn(TOY_SCATTER_SAMPLES, config.z_dim, generator=torch.Generator().manual_seed(7))
        summary["samples"] = trainer.sample(z.to(trainer.device, trainer.dtype)).float().cpu()
    return summary


def spread(values: list[float]) -> str:
    """``mean ± std`` over seeds (sample standard deviation; the mean alone for one seed)."""
    if len(values) < 2:
        return f"{values[0]:.4g}"
    return f"{statistics.mean(values):.4g} ± {statistics.stdev(values):.2g}"


def verdict(metric: str, plain: dict[int, float], regularized: dict[int, float]) -> str:
    """One line on ``metric`` (lower is better) by seed: the regularized side is called better (worse) when it
    is lower (higher) on every seed, each side run with the same seeds; anything else is no consistent
    difference at this budget."""
    seeds = sorted(plain)
    wins = sum(regularized[s] < plain[s] for s in seeds)
    n = len(seeds)
    means = (f"mean {spread([regularized[s] for s in seeds])} with Roth vs {spread([plain[s] for s in seeds])} "
             f"without, mean ± std over seeds {', '.join(map(str, seeds))}")
    if wins == n:
        call = f"Roth's regularizer gave the lower final {metric} on all {n} seeds"
    elif wins == 0:
        call = f"Roth's regularizer gave the higher (worse) final {metric} on all {n} seeds"
    else:
        call = f"no consistent difference: Roth's regularizer gave the lower final {metric} on {wins} of {n} seeds"
    return f"{call} ({means})."


def _settings(config: TrainConfig) -> dict[str, str]:
    """What a run trains, from its resolved config: the rows of the report's comparison table."""
    c = config
    rows = {"model (G and D)": c.model, "channel width": str(c.width) if c.model != "mlp" else "-",
            "D normalization": c.resolved("d_norm"),
            "data": c.data + (f", {c.resolution}x{c.resolution}" if c.model != "mlp" else ""),
            "latent dimension": str(c.z_dim), "batch": str(c.batch_size), "generator steps": str(c.steps),
            "optimizer": f"{c.resolved('optimizer')} lr D {c.resolved('lr_d'):g} / G {c.resolved('lr_g'):g}, "
                         f"betas {tuple(c.resolved('betas'))}, {c.resolved('n_critic')} D step(s) per G step",
            "generator EMA": f"decay {c.ema:g}" + (", ramped in: min(decay, (1 + t) / (10 + t))" if c.ema_warmup
                                                   else ""),
            "regularizer": "none" if c.reg == "none" else (
                f"{c.reg}, gamma {c.resolved('gamma'):g}" + (f" annealed by {c.gamma_anneal:g}" if c.gamma_anneal
                                                             else ""))}
    return rows


def write_report(out: str, results: dict, budget: DemoBudget) -> str:
    seeds = list(budget.seeds)
    lines = ["# fastreg demo: NS-GAN with and without Roth et al.'s regularizer", "",
             f"Each comparison runs both sides on the same {len(seeds)} seeds ({', '.join(map(str, seeds))}), data and "
             "budget; the regularized side adds (gamma_t/2) Omega_JS to D's loss with gamma_t = 2.0 * 0.01^(t/T) "
             "(Roth, Lucchi, Nowozin, Hofmann 2017). Spreads are the mean ± standard deviation over the seeds; curve "
             "bands run from the lowest to the highest seed.", ""]
    intro, verdicts = len(lines), []
    for dataset, title in DATASETS.items():
        pair = {name: r for name, r in results.items() if name.startswith(dataset + "-")}
        by_method = {m: {r["config"].seed: r for name, r in pair.items() if name.startswith(f"{dataset}-{m}-seed")}
                     for m in METHODS}
        metric = FINAL_METRIC[dataset]
        finals = {m: {s: r["final_eval"][metric] for s, r in runs.items()} for m, runs in by_method.items()}
        line = verdict(metric_label(metric)[0], finals["ns"], finals["ns-roth"])
        verdicts.append(f"- **{title}**: {line}")
        lines += [f"## {title}", "", f"**Verdict**: {line}", "", "What was compared (from each run's config.yaml):", "",
                  "| | ns | ns-roth |", "|---|---|---|"]
        sides = {m: _settings(next(iter(runs.values()))["config"]) for m, runs in by_method.items()}
        for row in sides["ns"]:
            lines.append(f"| {row} | {sides['ns'][row]} | {sides['ns-roth'][row]} |")
        lines.append(f"| seeds | {', '.join(map(str, sorted(by_method['ns'])))} | "
                     f"{', '.join(map(str, sorted(by_method['ns-roth'])))} |")
        differing = [row for row in sides["ns"] if sides["ns"][row] != sides["ns-roth"][row]]
        lines += ["", f"The two sides differ in: {', '.join(differing) or 'nothing'}.", ""]
        groups = {m: [r["config"].out for _, r in sorted(runs.items())] for m, runs in by_method.items()}
        curves = plot_seed_curves(groups, ["d_loss", "g_loss", "d_grad_norm", "g_grad_norm"],
                                  os.path.join(out, f"{dataset}_curves.png"), log_y=("d_grad_norm", "g_grad_norm"))
        evaluation = plot_seed_curves(groups, EVAL_CURVES[dataset], os.path.join(out, f"{dataset}_evaluation.png"),
                                      log_y=(f"fid/{DIGITS_EXTRACTOR}",))
        lines += [f"![curves]({os.path.basename(curves)})", "",
                  "Losses are means over each logging window. D loss: the loss D minimizes, the variant's "
                  "loss plus, on the regularized side, the weighted penalty (gamma_t/2) Omega. D gradient norm: "
                  "the L2 norm of the gradient of D's loss with respect to all of D's weights at the last D step of "
                  "the window (G gradient norm likewise for G's loss and weights).", ""]
        lines += evaluation_caption(dataset, pair) + [f"![evaluation]({os.path.basename(evaluation)})", ""]
        lines += samples_section(out, dataset, by_method)
        lines += run_table(dataset, by_method)
    lines[intro:intro] = ["## Verdicts", "", *verdicts, ""]
    accuracy = next((r["classifier_accuracy"] for r in results.values() if "classifier_accuracy" in r), None)
    if accuracy is not None:
        lines += [f"The `{DIGITS_EXTRACTOR}` extractor is fastreg's digits classifier: {accuracy[0]:.1%} accuracy on "
                  f"{accuracy[1]} held-out digits it never trained on. Its FIDs are not comparable with Inception "
                  "FIDs.", ""]
    path = os.path.join(out, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


def evaluation_caption(dataset: str, pair: dict) -> list[str]:
    some = next(iter(pair.values()))
    n = some["config"].eval_samples
    if dataset == "toy3d":
        return [f"Evaluations of the EMA generator on {n} samples each: the exact Wasserstein-1 distance to {n} "
                "mixture samples, and the high-quality fraction (samples within 3 sigma of a mode). The table's "
                "modes and high-quality fraction are the final evaluation's, on the same samples.", ""]
    floor = some["real_floor"]
    fid, kid = floor[f"fid/{DIGITS_EXTRACTOR}"], floor[f"kid/{DIGITS_EXTRACTOR}"]
    return [f"FID and KID of the EMA generator on {n} samples against all {some['real_count']} real digits "
            f"(features: `{DIGITS_EXTRACTOR}`, the held-out digits classifier; lower is better; 0 for the same "
            "distribution). KID is the unbiased polynomial-kernel MMD^2 of Binkowski et al. 2018; neither has a "
            f"fixed upper end: their scale is set by the features. For scale, two halves of the real digits score "
            f"FID {fid:.3g} and KID {kid:.3g} against each other (the real-data floor at that sample size).", ""]


def samples_section(out: str, dataset: str, by_method: dict) -> list[str]:
    """The final samples of the first seed's runs, of the EMA generator."""
    lines = []
    first = {m: runs[min(runs)] for m, runs in by_method.items()}
    decay = next(iter(first.values()))["ema_decay"]
    shown = (f"Final samples of the first seed's runs, from the EMA generator (the exponential moving average "
             f"of G's weights; its decay, ramped in, was {decay:.4g} at the last step).")
    if dataset == "toy3d":
        mixture = data.get_dataset("misspecified3d", seed=0)
        normal = torch.linalg.cross(mixture.basis[0], mixture.basis[1])
        panels = {}
        for method, r in first.items():
            offset = ((r["samples"].double() - mixture.modes.mean(dim=0)) @ normal).abs().mean().item()
            final = r["final_eval"]
            panels[f"{method}, seed {r['config'].seed}"] = {
                "samples": r["samples"],
                "title": f"{final['modes_covered']}/{mixture.n_modes} modes covered, mean distance off the plane "
                         f"{offset:.3f}"}
        path = plot_mixture_plane(panels, mixture, os.path.join(out, "toy3d_plane.png"))
        return [shown + f" {TOY_SCATTER_SAMPLES} generated points projected onto the mixture's plane; red circles: "
                "each mode's 3-sigma region (where a sample counts as high quality); grey: real samples.", "",
                f"![plane]({os.path.basename(path)})", ""]
    lines += [shown, ""]
    for r in first.values():
        name = os.path.basename(r["config"].out)
        lines += [f"**{name}**", "", f"![{name}]({name}/samples/step_{r['config'].steps:06d}.png)", ""]
    return lines


def run_table(dataset: str, by_method: dict) -> list[str]:
    """Every run's numbers, then each side's mean ± std over seeds."""
    image = dataset == "digits"
    quality = (f"| FID[{DIGITS_EXTRACTOR}] | KID[{DIGITS_EXTRACTOR}] |" if image
               else "| W1 | modes covered | high quality |")
    header = (f"| run | seed | steps | wall time (s) | steps/s | final D loss | final G loss {quality} "
              "evaluation time (s) |")
    lines = [header, "|---|" + "---:|" * (header.count("|") - 2)]

    def metrics(r: dict) -> list[float]:
        final = r["final_eval"]
        if image:
            return [final[f"fid/{DIGITS_EXTRACTOR}"], final[f"kid/{DIGITS_EXTRACTOR}"]]
        return [final["wasserstein_1"], final["modes_covered"], final["high_quality"]]

    for runs in by_method.values():
        for seed, r in sorted(runs.items()):
            values = [r["seconds"], r["steps_per_second"], r["d_loss"], r["g_loss"], *metrics(r), r["eval_seconds"]]
            lines.append(f"| {os.path.basename(r['config'].out)} | {seed} | {r['config'].steps} | "
                         + " | ".join(f"{v:.4g}" for v in values) + " |")
    for method, runs in by_method.items():
        columns = list(zip(*[[r["seconds"], r["steps_per_second"], r["d_loss"], r["g_loss"], *metrics(r),
                              r["eval_seconds"]] for r in runs.values()]))
        lines.append(f"| **{method}, mean ± std** | {len(runs)} seeds | - | "
                     + " | ".join(spread(list(c)) for c in columns) + " |")
    lines += ["", "Final D and G losses: the last logging window's means. The evaluation time (set-up included: "
              "training the classifier unless cached, real features) is part of the wall time.", ""]
    return lines
