"""``fastreg diagnose``: every diagnostic of docs/design.md section 7 on a trained run, as one report.

For the run's newest checkpoint (G and D as in training, on copies in training mode):

1. sample quality: FID/KID named by extractor (images) or Wasserstein / mode coverage (toy);
2. D-output histograms (Grewal et al. 2018, figs. 1-2) for the run's D, for that D after ``k``
   more D steps against the frozen G (the state of k:1 training before a G step), and for a
   fresh D trained from scratch against the frozen G;
3. the interpolation profile (Grewal et al. 2018, fig. 3) of the run's and the fresh D;
4. the vanishing-gradient experiment (Arjovsky & Bottou 2017) for the newest checkpoint, or for
   every kept checkpoint (G at several training stages, as in their fig. 2); with ``noise`` > 0
   each G also with instance noise on D's inputs;
5. with a second run, Roth et al. 2017's cross-test.

Writes into ``out`` the figures of the single diagnostics under their names (``histograms.png``,
``interpolation.png``, ``vanishing.png``, with a second run ``cross-test.png``), ``diagnostics.json``
(every number) and ``report.md``. Shows a bar over these stages on a terminal and prints a line per
finished stage when stdout is not one.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from dataclasses import dataclass

import torch

from . import plots
from ..atomic import write_text
from ..progress import Stages
from ..metrics.evaluation import Evaluator, describe, real_images
from ..train import build
from ..train.checkpoint import DamagedCheckpointError, list_checkpoints
from ..train.runs import Run, newest_good_checkpoint, open_run, training_state_of
from .cross_test import CROSS_SAMPLES, cross_test
from .discriminator import RealSampler, generate, logits, output_histograms, train_discriminator
from .interpolation import PAIRS, interpolation_profile
from .vanishing import vanishing_gradients


@dataclass
class DiagnoseOptions:
    k: int = 50                      # extra D steps of the k:1 histogram (Grewal et al.: 50)
    d_steps: int = 500               # D steps of the fresh D
    record_every: int = 25           # vanishing-gradient record interval (D steps)
    samples: int = 1000              # samples per histogram side and for FID/KID
    cross_samples: int = CROSS_SAMPLES
    all_checkpoints: bool = False
    extractor: str = "auto"
    seed: int = 0
    noise: float = 0.0               # > 0: vanishing gradients also with instance noise of this sigma


def diagnose(run_dir: str, out: str | None = None, other: str | None = None,
             options: DiagnoseOptions | None = None, device: str | None = None) -> str:
    """Run the diagnostics on ``run_dir`` (and the cross-test against ``other``); returns report.md's path."""
    o = options or DiagnoseOptions()
    out = out or os.path.join(run_dir, "diagnostics")
    os.makedirs(out, exist_ok=True)
    stages = Stages("fastreg diagnose", 5 if other else 4)
    with stages.stage("sample quality"):
        run = open_run(run_dir, device)
        c = run.config
        G, D = (copy.deepcopy(m).train() for m in (run.G, run.D))
        real = RealSampler(run.dataset, o.seed)
        results = {"run": run_dir, "step": run.step, "options": vars(o)}
        evaluator = Evaluator(run.dataset, c.data, c.z_dim, o.samples, o.extractor, run.device, o.seed,
                              root=c.data_root)
        results["quality"] = evaluator(run.sample)
    with stages.stage("vanishing gradients"):
        vanishing, fresh_D = vanishing_over_checkpoints(run, G, real, o)
        results["vanishing_gradients"] = {label: [r._asdict() for r in records] for label, records in vanishing.items()}
    with stages.stage("D histograms and interpolation"):
        results.update(discriminator_views(G, D, fresh_D, real, o))
    if other:
        with stages.stage("cross-test"):
            results["cross_test"] = cross_test_runs(run, G, D, open_run(other, device), o)
            results["other"] = other
    with stages.stage("figures and report"):
        figures = {
            "histograms": plots.plot_histograms(results["histograms"], os.path.join(out, "histograms.png")),
            "interpolation": plots.plot_interpolation(results["interpolation"], os.path.join(out, "interpolation.png")),
            "vanishing": plots.plot_vanishing(vanishing, os.path.join(out, "vanishing.png")),
        }
        if other:
            figures["cross-test"] = plots.plot_cross_test(results["cross_test"], (run_dir, other),
                                                          os.path.join(out, "cross-test.png"))
        write_text(os.path.join(out, "diagnostics.json"), json.dumps(results, indent=1))
        path = write_report(out, results, figures)
    stages.close()
    return path


def vanishing_over_checkpoints(run: Run, G, real: RealSampler, o: DiagnoseOptions):
    """Arjovsky & Bottou's experiment for G of the newest (or every kept) checkpoint, each with a fresh D
    (seeded; the same initial D with and without noise); returns ``{label: records}`` and the fresh D trained
    (without noise) against the newest G. ``o.noise`` > 0 adds a run with instance noise per checkpoint."""
    paths = list_checkpoints(run.path) if o.all_checkpoints else [newest_good_checkpoint(run.path)[0]]
    vanishing, fresh_D = {}, None
    for path in paths:
        try:
            state = training_state_of(path, run.path)  # intact, and the run's own (its manifest)
        except DamagedCheckpointError as exc:  # --all-checkpoints: a damaged or foreign one is left out, not fatal
            warnings.warn(f"{exc}; left out of the vanishing-gradient plot", stacklevel=2)
            continue
        G_t = copy.deepcopy(G)
        G_t.load_state_dict(state["G"])
        torch.manual_seed(o.seed)
        records, fresh_D = vanishing_gradients(G_t, fresh_discriminator(run), real, o.d_steps, o.record_every,
                                               seed=o.seed, desc=f"fresh D vs G at step {state['step']}")
        vanishing[f"G at step {state['step']}"] = records
        if o.noise > 0:
            torch.manual_seed(o.seed)
            vanishing[f"G at step {state['step']}, noise sigma={o.noise:g}"] = vanishing_gradients(
                G_t, fresh_discriminator(run), real, o.d_steps, o.record_every, seed=o.seed, noise=o.noise,
                desc=f"fresh D vs G at step {state['step']}, noise")[0]
    return vanishing, fresh_D


def discriminator_views(G, D, fresh_D, real: RealSampler, o: DiagnoseOptions) -> dict:
    """Logit histograms of the run's D, of that D after k more steps and of the fresh D; interpolation
    profiles of the run's and the fresh D. All on the same real and generated samples."""
    rng = torch.Generator().manual_seed(o.seed)
    x_real, x_fake = real(o.samples), generate(G, o.samples, rng)
    fresh = f"fresh D ({o.d_steps} steps)"
    discriminators = {"run's D": D,
                      f"run's D + {o.k} D steps": train_discriminator(copy.deepcopy(D), G, real, o.k, rng,
                                                                      desc=f"run's D + {o.k} steps"),
                      fresh: fresh_D}
    pairs = (x_real[:PAIRS], x_fake[:PAIRS])
    return {"histograms": {label: output_histograms(logits(d, x_real), logits(d, x_fake))
                           for label, d in discriminators.items()},
            "interpolation": {label: interpolation_profile(discriminators[label], *pairs)
                              for label in ("run's D", fresh)}}


def fresh_discriminator(run: Run) -> torch.nn.Module:
    """A newly initialised D of the run's architecture (global RNG), in training mode; ``run``: an opened run or a
    Trainer."""
    D = build.networks(run.config, run.shape)[1]
    return D.to(run.device, run.dtype).train()


def cross_test_runs(run: Run, G, D, other: Run, o: DiagnoseOptions, argument: str = "other") -> dict:
    """Roth's cross-test between this run (A) and ``other`` (B) on the same real samples; runs on different
    data raise ValueError naming ``argument``. ``run`` and ``other``: opened runs or Trainers (both have config,
    shape, dataset, G and D)."""
    if other.shape != run.shape or other.config.data != run.config.data:
        raise ValueError(f"{argument}: run {other.config.out} trains on {other.config.data} {other.shape}, "
                         f"not {run.config.data} {run.shape}; cross-testing needs the same data")
    dataset = run.dataset
    real = dataset.sample(o.cross_samples) if hasattr(dataset, "sample") else real_images(dataset, o.cross_samples,
                                                                                           o.seed)
    G_b, D_b = (copy.deepcopy(m).train() for m in (other.G, other.D))
    result = cross_test(G, D, G_b, D_b, real, o.cross_samples, o.seed)
    return {"confusion_a": result.confusion_a._asdict(), "confusion_b": result.confusion_b._asdict(),
            **{f"{name}_{side}": getattr(conf, name) for side, conf in (("a", result.confusion_a),
                                                                         ("b", result.confusion_b))
               for name in ("balanced_accuracy", "real_rate", "fake_rate")},
            "cross_false_positive_a": result.cross_false_positive_a,
            "cross_false_positive_b": result.cross_false_positive_b,
            "samples": result.samples, "real_samples": result.real_samples}


def write_report(out: str, results: dict, figures: dict) -> str:
    lines = [f"# Diagnostics of {results['run']} (step {results['step']})", "",
             f"Sample quality: {describe(results['quality'])}", "",
             "## D-output histograms (Grewal et al. 2018, figs. 1-2)", "",
             f"![histograms]({os.path.basename(figures['histograms'])})", "",
             "| D | accuracy | overlap | real mean (std) | fake mean (std) |", "|---|---:|---:|---:|---:|"]
    for label, h in results["histograms"].items():
        lines.append(f"| {label} | {h['accuracy']:.3f} | {h['overlap']:.3f} | {h['real_mean']:.3g} "
                     f"({h['real_std']:.3g}) | {h['fake_mean']:.3g} ({h['fake_std']:.3g}) |")
    lines += ["", "Overlap: sum over bins of min(p_i, q_i), p and q the normalized real and fake histograms "
              "(1 identical, 0 disjoint)."]
    lines += ["", "## Interpolation profile (Grewal et al. 2018, fig. 3)", "",
              f"![interpolation]({os.path.basename(figures['interpolation'])})", "",
              "## Vanishing gradients (Arjovsky & Bottou 2017)", "",
              f"![vanishing]({os.path.basename(figures['vanishing'])})", "",
              "| G | D steps | minimax grad norm | -log D grad norm (std) | D accuracy |", "|---|---:|---:|---:|---:|"]
    for label, records in results["vanishing_gradients"].items():
        for r in (records[0], records[-1]):
            lines.append(f"| {label} | {r['d_step']} | {r['minimax_mean']:.3g} | {r['nonsat_mean']:.3g} "
                         f"({r['nonsat_std']:.3g}) | {r['d_accuracy']:.3f} |")
    if "cross_test" in results:
        x = results["cross_test"]
        lines += ["", f"## Cross-test with {results['other']} (Roth et al. 2017)", "",
                  f"![cross-test]({os.path.basename(figures['cross-test'])})", "",
                  "| D | balanced accuracy | real called real | own fakes called fake | "
                  "other model's fakes called real |", "|---|---:|---:|---:|---:|"]
        for side, name in (("a", results["run"]), ("b", results["other"])):
            conf = x[f"confusion_{side}"]
            lines.append(f"| D of {name} | {x[f'balanced_accuracy_{side}']:.3f} | {x[f'real_rate_{side}']:.3f} "
                         f"({conf['real_called_real']}/{x['real_samples']}) | {x[f'fake_rate_{side}']:.3f} "
                         f"({conf['fake_called_fake']}/{x['samples']}) | {x[f'cross_false_positive_{side}']:.3f} |")
        lines += ["", f"{x['real_samples']} real samples, {x['samples']} samples of each generator; a sample is "
                  "called real when D's logit is positive. Balanced accuracy: the mean of the two rates before it "
                  "(0.5 for a D that calls everything fake, whatever the sample counts)."]
    path = os.path.join(out, "report.md")
    write_text(path, "\n".join(lines) + "\n")
    return path
