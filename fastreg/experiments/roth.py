"""Roth, Lucchi, Nowozin, Hofmann 2017, "Stabilizing Training of Generative Adversarial Networks
through Regularization": stability across architectures, cross-testing, the misspecified 3-D toy,
and the regularizer against explicitly added noise."""

from __future__ import annotations

import os
import time

from tqdm.auto import tqdm

from ..diagnostics.report import DiagnoseOptions, cross_test_runs
from ..plots import pyplot, save_figure
from ..regularizer_table import REGULARIZERS
from . import figures
from .budget import Scale
from .claims import HELD, NOT_HELD, Claim, all_of, at_least, fmt, lower, majority
from .report import Report
from .runs import image_config, toy_config, toy_quality, train_run

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


def stability(out: str, scale: Scale, data: str) -> Report:
    start, seed = time.perf_counter(), scale.seeds[0]
    report = Report("roth-stability", "Roth et al. 2017: stability across architectures", out, scale, data, (seed,),
                    description="Each architecture trained with each method for the same budget and seed; final FID "
                                "of the EMA generator (lower is better). A run stopped by a non-finite value counts "
                                "as diverged (FID infinite). The unregularized, both Roth and the instance-noise runs "
                                "train the same D on each architecture (with BN where the architecture has it; Roth's "
                                "penalty then runs D on the real and the fake batch in separate forwards, as the "
                                "authors' code). WGAN-GP's critic takes layer norm where the architecture has BN "
                                "(Gulrajani et al. 2017).")
    fid: dict[str, dict[str, float]] = {}
    curves = {}
    jobs = [(a, m) for a in scale.architectures for m in METHODS]
    for arch, method in tqdm(jobs, desc="roth-stability", unit="run"):
        config = image_config(scale, data, os.path.join(out, "runs", f"{arch}-{method}"), seed,
                              **architecture(arch, method, scale.width))
        run = train_run(f"{arch} / {method}", config)
        report.runs.append(run)
        fid.setdefault(arch, {})[method] = run.final("fid")
        curves.setdefault(ARCHITECTURES[arch][0], {})[method] = run.curve("fid")
    report.figure("FID of the EMA generator during training, one panel per architecture (log scale):",
                  figures.curve_panels(curves, os.path.join(out, "fid_curves.png"), "FID", log_y=True, columns=3))
    archs = list(fid)
    report.sections += ["## Final FID", "", "| architecture | " + " | ".join(METHODS) + " |",
                        "|---|" + "---:|" * len(METHODS)]
    for arch in archs:
        report.sections.append(f"| {arch} | " + " | ".join(fmt(fid[arch][m]) for m in METHODS) + " |")
    report.sections += ["", "Methods: " + "; ".join(f"`{m}`: {d}" for m, (d, _) in METHODS.items()) + ".",
                        "Architectures: " + "; ".join(f"`{a}`: {ARCHITECTURES[a][0]}" for a in archs) + "."]
    report.claims = stability_claims(fid, seed)
    report.settings = {"architectures": archs, "methods": list(METHODS), "steps": scale.image_steps,
                       "resolution": scale.resolution, "base width": scale.width}
    report.results = {"final_fid": fid}
    report.seconds = time.perf_counter() - start
    return report


def stability_claims(fid: dict[str, dict[str, float]], seed: int) -> list[Claim]:
    """Rules on final FIDs ``fid[architecture][method]`` (inf: diverged)."""
    archs = list(fid)
    need = len(archs) // 2 + 1
    claims = []
    for method, label in (("roth-annealed", "gamma0=2 annealed"), ("roth-0.1", "gamma=0.1")):
        wins = [lower(fid[a][method], fid[a]["ns"]) for a in archs]
        measured = "; ".join(f"{a}: {fmt(fid[a][method])} vs {fmt(fid[a]['ns'])}" for a in archs)
        claims.append(Claim(f"Roth's regularizer ({label}) trains better than the unregularized NS-GAN",
                            "regularized runs stable on every architecture; unregularized ones fail or degrade",
                            f"FID reg vs unreg: {measured}", [seed], at_least(wins, need),
                            f"FID with the regularizer lower than without on at least {need} of {len(archs)} "
                            f"architectures (a diverged run has infinite FID)."))
    worst_reg = max(fid[a]["roth-annealed"] for a in archs)
    worst_ns = max(fid[a]["ns"] for a in archs)
    verdict = lower(worst_reg, worst_ns)
    claims.append(Claim("The regularized GAN is robust to the architecture",
                        "one setting (gamma0=2 annealed) works across all architectures",
                        f"worst-architecture FID: reg {fmt(worst_reg)} vs unreg {fmt(worst_ns)}", [seed],
                        all_of([verdict]),
                        "The worst final FID over architectures is lower with the annealed regularizer than "
                        "without."))
    return claims


def cross(out: str, scale: Scale, data: str) -> Report:
    start, seed = time.perf_counter(), scale.seeds[0]
    report = Report("roth-cross-test", "Roth et al. 2017: cross-testing regularized vs unregularized NS-GAN", out,
                    scale, data, (seed,),
                    description="Two models with the same seed and budget, D without batch norm in both (a "
                                "sample's logit must not depend on its batch): unregularized NS-GAN (A) and "
                                "NS-GAN with the annealed regularizer (B). Each D classifies real samples, its own "
                                "G's samples and the other G's samples; a sample is called real when D's logit "
                                "is positive.")
    models = {}
    for name, extra in tqdm((("unregularized", {}), ("regularized", ROTH_ANNEALED)), desc="roth-cross-test",
                            unit="run"):
        config = image_config(scale, data, os.path.join(out, "runs", name), seed, steps=scale.cross_steps,
                              d_norm="none", **extra)
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
    report.sections += ["## Cross false-positive rates", "",
                        "| D | balanced accuracy on real + own fakes | other model's fakes called real |",
                        "|---|---:|---:|",
                        f"| unregularized (A) | {x['balanced_accuracy_a']:.3f} | {fp_unreg:.3f} |",
                        f"| regularized (B) | {x['balanced_accuracy_b']:.3f} | {fp_reg:.3f} |", "",
                        f"{n_real} real samples, {n} samples of each generator."]
    report.claims = cross_claims(fp_reg, fp_unreg, seed)
    report.commands.append(("the cross-test on the two trained runs",
                            f"fastreg diagnose {models['unregularized'].config.out} --other "
                            f"{models['regularized'].config.out} --cross-samples {scale.cross_samples} --seed {seed}"))
    report.settings = {"steps": scale.cross_steps, "cross samples": scale.cross_samples,
                       "resolution": scale.resolution, "width": scale.width}
    report.results = {"cross_test": x, "final_fid": {k: m.final("fid") for k, m in models.items()}}
    for m in models.values():
        m.trainer = None
    report.seconds = time.perf_counter() - start
    return report


def cross_claims(fp_reg: float, fp_unreg: float, seed: int) -> list[Claim]:
    """``fp_reg``: fraction of the unregularized G's samples the regularized D calls real; ``fp_unreg``: the
    converse."""
    measured = f"reg D on unreg G: {fp_reg:.3f}; unreg D on reg G: {fp_unreg:.3f}"
    return [
        Claim("The regularized D is the better judge: it rejects the other model's samples more often than the "
              "unregularized D does", "cross false-positive rate 0.0 (reg D) vs 1.0 (unreg D)", measured, [seed],
              all_of([lower(fp_reg, fp_unreg)]),
              "cross false-positive rate of the regularized D lower than that of the unregularized D."),
        Claim("The paper's extreme rates are reproduced", "0.0 vs 1.0", measured, [seed],
              all_of([fp_reg <= 0.1, fp_unreg >= 0.9]),
              "regularized D's rate <= 0.1 and unregularized D's rate >= 0.9."),
    ]


def toy(out: str, scale: Scale, data: str) -> Report:
    from ..data import TOY

    start = time.perf_counter()
    toy_data = data if data in TOY else "misspecified3d"
    seeds = scale.seeds
    report = Report("roth-toy", "Roth et al. 2017: the dimensionally misspecified 3-D mixture", out, scale, toy_data,
                    seeds, description=f"Tanh MLPs, Adam 1e-3, batch 512 on `{toy_data}` (7 Gaussians, sigma 0.01, "
                                       "on a circle in a rotated plane of R^3): unregularized NS-GAN vs NS-GAN with "
                                       "Roth's regularizer at constant gamma=0.1, over several seeds. A mode is "
                                       "covered when it receives at least 10% of its share of the samples within 3 "
                                       "sigma; quality is the fraction of samples within 3 sigma of a mode.")
    variants = {"unregularized": {}, "regularized": ROTH_CONSTANT}
    results: dict[str, dict[int, dict]] = {name: {} for name in variants}
    samples = {}
    jobs = [(name, seed) for seed in seeds for name in variants]
    for name, seed in tqdm(jobs, desc="roth-toy", unit="run"):
        config = toy_config(scale, os.path.join(out, "runs", f"{name}-seed{seed}"), seed, toy_data, **variants[name])
        run = train_run(f"{name} seed {seed}", config, keep_trainer=True)
        quality = toy_quality(run.trainer, scale.toy_samples) if not run.diverged else {
            "modes_covered": 0, "n_modes": 0, "high_quality": 0.0, "wasserstein_1": float("inf")}
        results[name][seed] = quality
        if seed == seeds[0] and not run.diverged:
            from .runs import sample_images

            samples[f"{name} (seed {seed})"] = sample_images(run.trainer, 2000)
        run.trainer = None
        report.runs.append(run)
    if samples:
        report.figure("Generated samples of the first seed (first two coordinates of R^3):",
                      figures.sample_panels(samples, os.path.join(out, "samples.png")))
    report.figure("Modes covered and high-quality fraction per seed (bars: mean, dots: seeds):",
                  _toy_bars(results, seeds, out))
    report.sections += ["## Per seed", "", "| run | seed | modes covered | high quality | W1 |",
                        "|---|---:|---:|---:|---:|"]
    for name in variants:
        for seed in seeds:
            q = results[name][seed]
            report.sections.append(f"| {name} | {seed} | {q['modes_covered']}/{q['n_modes']} | "
                                   f"{q['high_quality']:.3f} | {fmt(q['wasserstein_1'])} |")
    report.claims = toy_claims(results["regularized"], results["unregularized"])
    report.settings = {"steps": scale.toy_steps, "samples scored": scale.toy_samples, "gamma": 0.1}
    report.results = results
    report.seconds = time.perf_counter() - start
    return report


def _toy_bars(results: dict, seeds, out: str) -> str:
    groups = {"modes covered": {n: [float(results[n][s]["modes_covered"]) for s in seeds] for n in results},
              "high quality x 7": {n: [7 * results[n][s]["high_quality"] for s in seeds] for n in results}}
    return figures.grouped_bars(groups, os.path.join(out, "toy_quality.png"), "value")


def toy_claims(reg: dict[int, dict], unreg: dict[int, dict]) -> list[Claim]:
    """``reg``/``unreg``: seed -> {modes_covered, high_quality, wasserstein_1}."""
    seeds = sorted(reg)
    n_modes = max(r.get("n_modes", 7) for r in (*reg.values(), *unreg.values()))
    modes = "; ".join(f"seed {s}: {reg[s]['modes_covered']} vs {unreg[s]['modes_covered']}" for s in seeds)
    quality = "; ".join(f"seed {s}: {reg[s]['high_quality']:.3f} vs {unreg[s]['high_quality']:.3f}" for s in seeds)
    w1 = "; ".join(f"seed {s}: {fmt(reg[s]['wasserstein_1'])} vs {fmt(unreg[s]['wasserstein_1'])}" for s in seeds)
    return [
        Claim("The regularized GAN covers all modes, and never fewer than the unregularized one",
              "regularized: all 7 modes; unregularized: fails on the misspecified mixture",
              f"modes reg vs unreg (of {n_modes}): {modes}", seeds,
              HELD if all(reg[s]["modes_covered"] >= unreg[s]["modes_covered"] for s in seeds)
              and majority([reg[s]["modes_covered"] == n_modes for s in seeds]) == HELD else NOT_HELD,
              "with the regularizer all modes covered on a majority of seeds, and on every seed at least as many "
              "modes as without."),
        Claim("The regularized GAN puts more samples near the modes", "regularized samples concentrate on the modes",
              f"high-quality fraction reg vs unreg: {quality}", seeds,
              majority([lower(-reg[s]["high_quality"], -unreg[s]["high_quality"]) for s in seeds]),
              "high-quality fraction higher with the regularizer on a majority of seeds."),
        Claim("The regularized GAN is closer to the data in W1", "(quality, fig. of the toy experiment)",
              f"W1 reg vs unreg: {w1}", seeds,
              majority([lower(reg[s]["wasserstein_1"], unreg[s]["wasserstein_1"]) for s in seeds]),
              "W1 lower with the regularizer on a majority of seeds."),
    ]


def explicit_noise(out: str, scale: Scale, data: str) -> Report:
    start, seed = time.perf_counter(), scale.seeds[0]
    report = Report("explicit-noise", "Roth et al. 2017: the regularizer vs explicitly added noise", out, scale, data,
                    (seed,), description="The regularizer is the analytic, small-noise approximation of convolving "
                                         "both densities with Gaussian noise. Here NS-GAN (DCGAN, no BN in D) with the "
                                         "annealed regularizer is compared with NS-GAN trained on explicitly noisy "
                                         "inputs (real and fake, constant sigma) at several noise levels, and with no "
                                         "regularization at all; same seed and budget.")
    runs = {"none": {}, "roth": ROTH_ANNEALED}
    runs.update({f"noise {s:g}": {"noise": s, "noise_schedule": "constant"} for s in scale.noise_levels})
    fid, curves = {}, {}
    for name, extra in tqdm(runs.items(), desc="explicit-noise", unit="run"):
        config = image_config(scale, data, os.path.join(out, "runs", name.replace(" ", "-")), seed,
                              d_norm="none", **extra)
        run = train_run(name, config)
        report.runs.append(run)
        fid[name] = run.final("fid")
        curves[name] = run.curve("fid")
    report.figure("FID during training (log scale):",
                  figures.curve_panels({"FID": curves}, os.path.join(out, "fid_curves.png"), "FID", log_y=True))
    levels = list(scale.noise_levels)
    noise_fid = {s: fid[f"noise {s:g}"] for s in levels}
    report.figure("Final FID against the explicit noise level; the regularized and the unregularized runs as lines:",
                  _noise_plot(noise_fid, fid["roth"], fid["none"], os.path.join(out, "fid_vs_noise.png")))
    report.sections += ["## Final FID", "", "| run | final FID |", "|---|---:|",
                        *(f"| {name} | {fmt(v)} |" for name, v in fid.items())]
    report.claims = noise_claims(fid["roth"], fid["none"], noise_fid, seed)
    report.settings = {"steps": scale.image_steps, "noise levels": levels, "noise schedule": "constant"}
    report.results = {"final_fid": fid}
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


def noise_claims(roth: float, none: float, noise_fid: dict[float, float], seed: int) -> list[Claim]:
    levels = "; ".join(f"sigma {s:g}: {fmt(v)}" for s, v in noise_fid.items())
    return [
        Claim("The regularizer beats explicit noise at every noise level",
              "regularizer better than any level of explicit noise", f"FID reg {fmt(roth)}; noise {levels}", [seed],
              all_of([lower(roth, v) for v in noise_fid.values()]),
              "final FID with the regularizer lower than with explicit noise at each level tried."),
        Claim("The regularizer beats no regularization", "regularized training better than unregularized",
              f"FID reg {fmt(roth)} vs none {fmt(none)}", [seed], all_of([lower(roth, none)]),
              "final FID with the regularizer lower than without."),
    ]
