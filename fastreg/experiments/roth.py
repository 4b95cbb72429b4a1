"""Roth, Lucchi, Nowozin, Hofmann 2017, "Stabilizing Training of Generative Adversarial Networks
through Regularization": stability across architectures, cross-testing, and the regularizer against
explicitly added noise (the misspecified 3-D toy: :mod:`fastreg.experiments.roth_toy`)."""

from __future__ import annotations

import os
import time

from tqdm.auto import tqdm

from ..diagnostics.report import DiagnoseOptions, cross_test_runs
from ..diagnostics.plots import pyplot, save_figure
from ..regularizers import REGULARIZERS
from . import figures
from .budget import Scale
from .claims import (MIN_SEEDS, Claim, all_of, at_least, better_beyond_spread, fid_fell, finite, fmt,
                     gate, lower, mean_std, spread_text)
from .report import Report
from .runs import (image_config, train_run)

ROTH_ANNEALED = REGULARIZERS["roth"].preset(annealed=True)  # gamma0 = 2, alpha = 0.01
ROTH_CONSTANT = REGULARIZERS["roth"].preset()               # gamma = 0.1
INSTANCE_NOISE = 0.3   # sigma_0 of the instance-noise baseline (linear decay to 0)

ARCHITECTURES = {
    "dcgan": ("DCGAN, BN in D", lambda w: {"model": "dcgan", "width": w, "d_norm": "batch"}),
    "dcgan-nobn": ("DCGAN, no BN in D", lambda w: {"model": "dcgan", "width": w, "d_norm": "none"}),
    "dcgan-narrow": ("DCGAN, BN in D, half width", lambda w: {"model": "dcgan", "width": max(4, w // 2),
                                                             "d_norm": "batch"}),
    "dcgan-wide": ("DCGAN, BN in D, double width", lambda w: {"model": "dcgan", "width": 2 * w, "d_norm": "batch"}),
    "resnet": ("ResNet G and D (no BN in D), half width", lambda w: {"model": "resnet", "width": max(4, w // 2),
                                                                     "d_norm": "none"}),
}
METHODS = {
    "ns": ("unregularized NS-GAN", {}),
    "roth-annealed": ("NS + Roth, gamma0=2 annealed (alpha=0.01)", ROTH_ANNEALED),
    "roth-0.1": ("NS + Roth, gamma=0.1 constant", ROTH_CONSTANT),
    "noise": (f"NS + instance noise sigma0={INSTANCE_NOISE} (linear decay)", {"noise": INSTANCE_NOISE}),
    "wgan-gp": ("WGAN-GP (lambda=10, n_critic=5)", {"variant": "wgan-gp"}),
}


def architecture(arch: str, method: str, width: int) -> dict:
    """Config fields of an (architecture, method) pair. Every GAN-loss method trains the architecture's
    own D (Roth's penalty with separate real/fake forwards under batch norm, as the authors' code);
    WGAN-GP, a different loss from a different paper, replaces batch norm by layer norm as Gulrajani et
    al. 2017 prescribe for its critic."""
    fields = {**ARCHITECTURES[arch][1](width), **METHODS[method][1]}
    if fields.get("variant") == "wgan-gp" and fields.get("d_norm") == "batch":
        fields["d_norm"] = "layer"
    return fields


FAIL_FACTOR = 1.5   # an unregularized run "fails" when it diverges or ends above 1.5x its own best FID


def stability(out: str, scale: Scale, data: str) -> Report:
    start, seeds = time.perf_counter(), scale.seeds
    methods = [m for m in METHODS if m in scale.methods]
    report = Report("roth-stability", "Roth et al. 2017: stability across architectures", out, scale, data, seeds,
                    description="Each architecture trained with each method for the same budget on every seed; "
                                "final FID of the EMA generator (lower is better). A run stopped by a non-finite "
                                "value counts as diverged (FID infinite). The unregularized, both Roth and the "
                                "instance-noise runs train the same D on each architecture (with BN where the "
                                "architecture has it; Roth's penalty then runs D on the real and the fake batch in "
                                "separate forwards, as the authors' code). WGAN-GP's critic takes layer norm where "
                                "the architecture has BN (Gulrajani et al. 2017). The claims are about stabilizing "
                                "a GAN that fails: they are decided only if some unregularized run diverged or "
                                f"ended above {FAIL_FACTOR}x its own best FID.")
    fid: dict[str, dict[str, list[float]]] = {}
    failed: dict[str, bool] = {}
    curves = {}
    jobs = [(a, m, s) for a in scale.architectures for m in methods for s in seeds]
    for arch, method, seed in tqdm(jobs, disable=None, desc="roth-stability", unit="run"):
        config = image_config(scale, data, os.path.join(out, "runs", f"{arch}-{method}-seed{seed}"), seed,
                              **architecture(arch, method, scale.width))
        run = train_run(f"{arch} / {method} / seed {seed}", config)
        report.runs.append(run)
        fid.setdefault(arch, {}).setdefault(method, []).append(run.final("fid"))
        curves.setdefault(ARCHITECTURES[arch][0], {})[f"{method} s{seed}"] = run.curve("fid")
        if method == "ns":
            failed[arch] = failed.get(arch, False) or run_failed(run.final("fid"), [v for _, v in run.curve("fid")])
    report.figure("FID of the EMA generator during training, one panel per architecture, a line per method and "
                  "seed (log scale):",
                  figures.curve_panels(curves, os.path.join(out, "fid_curves.png"), "FID", log_y=True, columns=3))
    archs = list(fid)
    report.sections += ["## Final FID (mean ± std over seeds)", "", "| architecture | " + " | ".join(methods) + " |",
                        "|---|" + "---:|" * len(methods)]
    for arch in archs:
        report.sections.append(f"| {arch} | " + " | ".join(spread_text(fid[arch][m]) for m in methods) + " |")
    report.sections += ["", "Unregularized run failed (diverged, or final FID above "
                        f"{FAIL_FACTOR}x its best): " + ", ".join(f"{a}: {'yes' if failed[a] else 'no'}"
                                                              for a in archs) + ".",
                        "", "Methods: " + "; ".join(f"`{m}`: {METHODS[m][0]}" for m in methods) + ".",
                        "Architectures: " + "; ".join(f"`{a}`: {ARCHITECTURES[a][0]}" for a in archs) + "."]
    report.departures = [f"{scale.image_steps} generator steps at {scale.resolution}x{scale.resolution} on {data} "
                         f"(Roth et al.: 100k+ iterations on CelebA/LSUN/CIFAR at 32 and 64 px), width {scale.width}, "
                         f"{len(seeds)} seeds."]
    report.claims = stability_claims(fid, failed, list(seeds))
    report.settings = {"architectures": archs, "methods": methods, "steps": scale.image_steps,
                       "resolution": scale.resolution, "base width": scale.width}
    report.results = {"final_fid": fid, "unregularized_failed": failed}
    report.seconds = time.perf_counter() - start
    return report


def run_failed(final: float, curve: list[float]) -> bool:
    """An unregularized run failed: it diverged (final FID not finite) or ended above FAIL_FACTOR x its best."""
    finite_curve = [v for v in curve if finite(v)]
    if not finite(final):
        return True
    return bool(finite_curve) and final > FAIL_FACTOR * min(finite_curve)


def stability_claims(fid: dict[str, dict[str, list[float]]], failed: dict[str, bool], seeds: list[int]) -> list[Claim]:
    """Rules on final FIDs ``fid[architecture][method]`` over seeds (inf: diverged); ``failed[architecture]``:
    whether the unregularized GAN failed there (:func:`run_failed` on any seed), the claims' regime gate."""
    archs = list(fid)
    need = len(archs) // 2 + 1
    claims = []
    for method, label in (("roth-annealed", "gamma0=2 annealed"), ("roth-0.1", "gamma=0.1")):
        if not all(method in fid[a] for a in archs):
            continue
        wins = [better_beyond_spread(fid[a][method], fid[a]["ns"]) for a in archs]
        measured = "; ".join(f"{a}: {spread_text(fid[a][method])} vs {spread_text(fid[a]['ns'])}" for a in archs)
        claims.append(Claim(f"Roth's regularizer ({label}) trains better than the unregularized NS-GAN",
                            "regularized runs stable on every architecture; unregularized ones fail or degrade",
                            f"FID reg vs unreg (mean ± std): {measured}", seeds, at_least(wins, need),
                            f"mean FID with the regularizer lower than without by more than the seed spread (the "
                            f"larger std of the two) on at least {need} of {len(archs)} architectures, >= 3 seeds "
                            f"(a diverged run has infinite FID)."))
    if all("roth-annealed" in fid[a] for a in archs):
        worst_reg = max((mean_std(fid[a]["roth-annealed"]) for a in archs), key=lambda ms: ms[0])
        worst_ns = max((mean_std(fid[a]["ns"]) for a in archs), key=lambda ms: ms[0])
        margin = max((s for s in (worst_reg[1], worst_ns[1]) if finite(s)), default=0.0)
        verdict = lower(worst_reg[0], worst_ns[0], margin) if len(seeds) >= MIN_SEEDS else None
        claims.append(Claim("The regularized GAN is robust to the architecture",
                            "one setting (gamma0=2 annealed) works across all architectures",
                            f"worst-architecture mean FID: reg {fmt(worst_reg[0])} vs unreg {fmt(worst_ns[0])} "
                            f"(margin {fmt(margin, 2)})", seeds, all_of([verdict]),
                            "the worst mean final FID over architectures is lower with the annealed regularizer "
                            "than without, by more than the seed spread."))
    reason = (f"regime not reached: the unregularized GAN did not fail on any architecture (no seed diverged or "
              f"ended above {FAIL_FACTOR}x its best FID), so there is nothing to stabilize; needs the papers' "
              f"budget (--scale full)")
    return gate(claims, any(failed.values()), reason)


OWN_FAKE_GATE = 0.2   # cross-test regime: each D calls at most this fraction of its own G's samples real
REAL_GATE = 0.8       # ... and at least this fraction of the real samples real (it discriminates, not rejects all)
CROSS_D_NORM = "batch"  # the DCGAN D of the authors' code, BN included, on both sides (as the other experiments)


def cross(out: str, scale: Scale, data: str) -> Report:
    start, seed = time.perf_counter(), scale.seeds[0]
    report = Report("roth-cross-test", "Roth et al. 2017: cross-testing regularized vs unregularized NS-GAN", out,
                    scale, data, (seed,),
                    description="Two models with the same seed and budget, the DCGAN D with batch norm in both "
                                "(the authors' D; each D judges batches of one source, real, own fakes or other "
                                "fakes, in separate forwards, as it trained): unregularized NS-GAN (A) and "
                                "NS-GAN with the regularizer at constant gamma=0.1 (B; the paper cross-tests its "
                                "gamma=0.1 models). Each D classifies real samples, its own G's samples and the "
                                "other G's samples; a sample is called real when D's logit is positive. The claims "
                                f"are decided only when each D rejects its own fakes (calls at most "
                                f"{OWN_FAKE_GATE:.0%} of them real) and accepts the real samples (calls at least "
                                f"{REAL_GATE:.0%} real): otherwise the cross rates only echo how much each D "
                                "accepts of any sample.")
    models = {}
    for name, extra in tqdm((("unregularized", {}), ("regularized", ROTH_CONSTANT)), desc="roth-cross-test",
                            unit="run", disable=None):
        config = image_config(scale, data, os.path.join(out, "runs", name), seed, steps=scale.cross_steps,
                              d_norm=CROSS_D_NORM, **extra)
        models[name] = train_run(name, config, keep_trainer=True)
        report.runs.append(models[name])
    a, b = models["unregularized"].trainer, models["regularized"].trainer
    options = DiagnoseOptions(cross_samples=scale.cross_samples, seed=seed)
    x = cross_test_runs(a, a.G, a.D, b, options)
    n_real, n = x["real_samples"], x["samples"]

    def rows(conf: dict, cross_fp: float) -> list[list[float]]:
        return [[conf["real_called_real"] / n_real, conf["real_called_fake"] / n_real],
                [conf["fake_called_real"] / n, conf["fake_called_fake"] / n], [cross_fp, 1 - cross_fp]]

    matrices = {"D unregularized (A)": rows(x["confusion_a"], x["cross_false_positive_a"]),
                "D regularized (B)": rows(x["confusion_b"], x["cross_false_positive_b"])}
    report.figure("Confusion matrices (rows: sample source, columns: D's call), fractions of each row:",
                  figures.confusion_panels(matrices, ["real", "own G", "other G"], ["called real", "called fake"],
                                           os.path.join(out, "confusion.png")))
    fp_unreg, fp_reg = x["cross_false_positive_a"], x["cross_false_positive_b"]
    own_unreg, own_reg = x["confusion_a"]["fake_called_real"] / n, x["confusion_b"]["fake_called_real"] / n
    real_unreg = x["confusion_a"]["real_called_real"] / n_real
    real_reg = x["confusion_b"]["real_called_real"] / n_real
    report.sections += ["## Cross false-positive rates", "",
                        "| D | balanced accuracy on real + own fakes | real called real | own fakes called real "
                        "| other model's fakes called real |", "|---|---:|---:|---:|---:|",
                        f"| unregularized (A) | {x['balanced_accuracy_a']:.3f} | {real_unreg:.3f} | {own_unreg:.3f} "
                        f"| {fp_unreg:.3f} |",
                        f"| regularized (B) | {x['balanced_accuracy_b']:.3f} | {real_reg:.3f} | {own_reg:.3f} "
                        f"| {fp_reg:.3f} |", "",
                        f"{n_real} real samples, {n} samples of each generator."]
    report.departures = [f"{scale.cross_steps} generator steps at {scale.resolution}x{scale.resolution} on {data}, "
                         f"width {scale.width}, one seed (Roth et al.: fully trained models on CelebA 64x64)."]
    report.claims = cross_claims(fp_reg, fp_unreg, seed, own_reg, own_unreg, min(real_reg, real_unreg))
    report.commands.append(("the cross-test on the two trained runs",
                            f"fastreg diagnose {models['unregularized'].config.out} --other "
                            f"{models['regularized'].config.out} --cross-samples {scale.cross_samples} --seed {seed}"))
    report.settings = {"steps": scale.cross_steps, "cross samples": scale.cross_samples, "gamma": 0.1,
                       "resolution": scale.resolution, "width": scale.width}
    report.results = {"cross_test": x, "own_fake_rate": {"unregularized": own_unreg, "regularized": own_reg},
                      "real_rate": {"unregularized": real_unreg, "regularized": real_reg},
                      "final_fid": {k: m.final("fid") for k, m in models.items()}}
    for m in models.values():
        m.trainer = None
    report.seconds = time.perf_counter() - start
    return report


def cross_claims(fp_reg: float, fp_unreg: float, seed: int, own_reg: float = 0.0, own_unreg: float = 0.0,
                 real_rate: float = 1.0) -> list[Claim]:
    """``fp_reg``: fraction of the unregularized G's samples the regularized D calls real; ``fp_unreg``: the
    converse. Gate: ``own_reg``/``own_unreg``, the fraction of its own G's samples each D calls real, at most
    OWN_FAKE_GATE, and ``real_rate``, the smaller fraction of real samples a D calls real, at least REAL_GATE."""
    measured = (f"reg D on unreg G: {fp_reg:.3f}; unreg D on reg G: {fp_unreg:.3f} (own fakes called real: reg D "
                f"{own_reg:.3f}, unreg D {own_unreg:.3f})")
    claims = [
        Claim("The regularized D is the better judge: it rejects the other model's samples more often than the "
              "unregularized D does", "cross false-positive rate 0.0 (reg D) vs 1.0 (unreg D)", measured, [seed],
              all_of([lower(fp_reg, fp_unreg)]),
              "cross false-positive rate of the regularized D lower than that of the unregularized D."),
        Claim("The paper's extreme rates are reproduced", "0.0 vs 1.0", measured, [seed],
              all_of([fp_reg <= 0.1, fp_unreg >= 0.9]),
              "regularized D's rate <= 0.1 and unregularized D's rate >= 0.9."),
    ]
    worst = max(own_reg, own_unreg)
    if not (finite(worst) and worst <= OWN_FAKE_GATE):
        return gate(claims, False, f"regime not reached: a D calls {fmt(worst, 3)} of its own G's samples real "
                                   f"(gate: at most {OWN_FAKE_GATE}), so cross rates only echo its acceptance of any "
                                   "fake; train longer")
    return gate(claims, finite(real_rate) and real_rate >= REAL_GATE,
                f"regime not reached: a D calls only {fmt(real_rate, 3)} of the real samples real (gate: at least "
                f"{REAL_GATE}): it rejects everything rather than discriminating")


def explicit_noise(out: str, scale: Scale, data: str) -> Report:
    start, seeds = time.perf_counter(), scale.seeds
    report = Report("explicit-noise", "Roth et al. 2017: the regularizer vs explicitly added noise", out, scale, data,
                    seeds, description="The regularizer is the analytic, small-noise approximation of convolving "
                                       "both densities with Gaussian noise. Here NS-GAN (DCGAN, no BN in D) with the "
                                       "annealed regularizer is compared with NS-GAN trained on explicitly noisy "
                                       "inputs (real and fake, constant sigma) at several noise levels, and with no "
                                       "regularization at all; same seeds and budget. A side is better when its "
                                       "mean final FID is lower by more than the seed spread; the claims are "
                                       "decided only when the unregularized baseline trained (its FID fell over "
                                       "training on every seed).")
    runs = {"none": {}, "roth": ROTH_ANNEALED}
    runs.update({f"noise {s:g}": {"noise": s, "noise_schedule": "constant"} for s in scale.noise_levels})
    fid: dict[str, list[float]] = {name: [] for name in runs}
    curves: dict[str, list] = {}
    trained = []
    jobs = [(name, seed) for name in runs for seed in seeds]
    for name, seed in tqdm(jobs, disable=None, desc="explicit-noise", unit="run"):
        config = image_config(scale, data, os.path.join(out, "runs", f"{name.replace(' ', '-')}-seed{seed}"), seed,
                              d_norm="none", **runs[name])
        run = train_run(f"{name} seed {seed}", config)
        report.runs.append(run)
        fid[name].append(run.final("fid"))
        curves[f"{name} s{seed}"] = run.curve("fid")
        if name == "none":
            trained.append(fid_fell(run.curve("fid")))
    report.figure("FID during training (log scale):",
                  figures.curve_panels({"FID": curves}, os.path.join(out, "fid_curves.png"), "FID", log_y=True))
    levels = list(scale.noise_levels)
    noise_fid = {s: fid[f"noise {s:g}"] for s in levels}
    report.figure("Mean final FID against the explicit noise level; the regularized and the unregularized runs as "
                  "lines:", _noise_plot({s: mean_std(v)[0] for s, v in noise_fid.items()}, mean_std(fid["roth"])[0],
                                        mean_std(fid["none"])[0], os.path.join(out, "fid_vs_noise.png")))
    report.sections += ["## Final FID", "", "| run | mean ± std over seeds | seeds |", "|---|---:|---|",
                        *(f"| {name} | {spread_text(v)} | {', '.join(fmt(x) for x in v)} |" for name, v in fid.items())]
    report.departures = [f"{scale.image_steps} generator steps at {scale.resolution}x{scale.resolution} on {data}, "
                         f"width {scale.width}, noise levels {', '.join(f'{s:g}' for s in levels)}."]
    report.claims = noise_claims(fid["roth"], fid["none"], noise_fid, list(seeds), all(trained))
    report.settings = {"steps": scale.image_steps, "noise levels": levels, "noise schedule": "constant"}
    report.results = {"final_fid": fid, "baseline_trained": trained}
    report.seconds = time.perf_counter() - start
    return report


def _noise_plot(noise_fid: dict, roth: float, none: float, path: str) -> str:
    import math

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    points = [(s, v) for s, v in noise_fid.items() if math.isfinite(v)]
    if points:
        ax.plot(*zip(*points), "o-", label="explicit noise")
    for value, label, style in ((roth, "Roth regularizer", "C1--"), (none, "unregularized", "C2:")):
        if math.isfinite(value):
            ax.axhline(value, color=style[:2], linestyle=style[2:], label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("noise sigma")
    ax.set_ylabel("final FID")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, plt, path)


def noise_claims(roth: list[float], none: list[float], noise_fid: dict[float, list[float]], seeds: list[int],
                 baseline_trained: bool = True) -> list[Claim]:
    """Final FIDs over seeds: with the regularizer, without, and with explicit noise per level. Gate:
    ``baseline_trained`` (the unregularized runs' FID fell over training on every seed)."""
    levels = "; ".join(f"sigma {s:g}: {spread_text(v)}" for s, v in noise_fid.items())
    claims = [
        Claim("The regularizer beats explicit noise at every noise level",
              "regularizer better than any level of explicit noise", f"FID reg {spread_text(roth)}; noise {levels}",
              seeds, all_of([better_beyond_spread(roth, v) for v in noise_fid.values()]),
              "mean final FID with the regularizer lower than with explicit noise at each level tried, by more than "
              "the seed spread (>= 3 seeds)."),
        Claim("The regularizer beats no regularization", "regularized training better than unregularized",
              f"FID reg {spread_text(roth)} vs none {spread_text(none)}", seeds,
              all_of([better_beyond_spread(roth, none)]),
              "mean final FID with the regularizer lower than without, by more than the seed spread (>= 3 seeds)."),
    ]
    return gate(claims, baseline_trained, "regime not reached: the unregularized baseline's FID did not fall over "
                                          "training on every seed")
