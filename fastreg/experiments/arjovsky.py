"""Arjovsky & Bottou 2017, "Towards Principled Methods for Training GANs": the vanishing-gradient
experiment (figs. 2-3), with and without instance noise.

One NS-GAN (DCGAN) is trained; its generator is frozen after 1, 10 and 25 epochs (scaled to the
dataset: an epoch is one pass over it at batch 64). For each frozen G a fresh D is trained from
scratch, and every few D steps G's gradient norm under the original cost E log(1 - D(G(z))) and
under the -log D cost is measured (:func:`fastreg.diagnostics.vanishing_gradients`). The same is
repeated with a D that sees Gaussian instance noise on both real and generated inputs.
"""

from __future__ import annotations

import copy
import math
import os
import time

import torch
from tqdm.auto import tqdm

from ..diagnostics import plots
from ..diagnostics import RealSampler, vanishing_gradients
from ..diagnostics.report import fresh_discriminator
from ..train.checkpoint import list_checkpoints, load_checkpoint
from .budget import Scale
from .claims import INCONCLUSIVE, Claim, all_of, fmt, lower, majority
from .report import Report
from .runs import IMAGE_BATCH, image_config, train_run

NOISE_SIGMA = 0.3   # the instance noise of the "with noise" fresh D (as roth-stability's baseline)
D_ACCURACY_GATE = 0.9   # regime of Thms 2.4/2.6: the fresh D (without noise) approaches the optimal D


def vanishing(out: str, scale: Scale, data: str) -> Report:
    start, seed = time.perf_counter(), scale.seeds[0]
    probe = image_config(scale, data, os.path.join(out, "runs", "ns"), seed)
    from ..train import build

    epoch_steps = scale.epoch_steps or max(1, len(build.dataset_of(probe)) // IMAGE_BATCH)
    steps = max(scale.epochs) * epoch_steps
    config = image_config(scale, data, probe.out, seed, steps=steps, checkpoint_every=epoch_steps,
                          keep_checkpoints=max(scale.epochs), sample_every=steps)
    report = Report("arjovsky-vanishing", "Arjovsky & Bottou 2017: vanishing gradients of the original GAN cost",
                    out, scale, data, (seed,),
                    description=f"NS-GAN (DCGAN, BN in D) trained for {max(scale.epochs)} epochs of {epoch_steps} "
                                f"steps; G frozen after {', '.join(map(str, scale.epochs))} epochs. For each frozen "
                                f"G, a fresh D (same architecture) is trained for {scale.fresh_d_steps} steps (Adam "
                                f"2e-4, logistic loss; the paper: 4,000) and G's gradient norm is recorded every "
                                f"{scale.record_every} D steps (mean over {scale.probe_batches} latent batches of "
                                f"64, the same batches at every record). The -log D gradient's variance is "
                                f"tr Cov(g) / ||mean g||^2 over the batches' gradient vectors. 'With noise': the "
                                f"fresh D sees instance noise sigma={NOISE_SIGMA} on real and generated inputs, in "
                                f"training and in the probe (the same noise draws at every record). The claims "
                                f"are about a D near the optimal one: a frozen G counts only if its fresh D ends "
                                f"with accuracy >= {D_ACCURACY_GATE}.")
    run = train_run("ns", config, keep_trainer=True)
    report.runs.append(run)
    trainer = run.trainer
    by_step = {load_checkpoint(p)["step"]: p for p in list_checkpoints(config.out)}
    records = {"without noise": {}, "with noise": {}}
    real = RealSampler(trainer.real.dataset, seed)
    jobs = [(e, kind) for e in scale.epochs for kind in records]
    for epochs, kind in tqdm(jobs, disable=None, desc="arjovsky-vanishing", unit="fresh D"):
        path = by_step.get(epochs * epoch_steps)
        if path is None:   # the run diverged before this epoch
            continue
        G = copy.deepcopy(trainer.G).train()
        G.load_state_dict(load_checkpoint(path)["G"])
        torch.manual_seed(seed)
        D = fresh_discriminator(trainer)
        noise = NOISE_SIGMA if kind == "with noise" else 0.0
        result, _ = vanishing_gradients(G, D, real, scale.fresh_d_steps, scale.record_every,
                                        batches=scale.probe_batches, seed=seed, noise=noise)
        records[kind][f"{epochs} epochs"] = result
    for kind, runs in records.items():
        if runs:
            figure = os.path.join(out, f"vanishing_{kind.replace(' ', '_')}.png")
            report.figure(f"G gradient norms vs fresh-D iterations, {kind} (log scale; left: original cost, right: "
                          "-log D):", plots.plot_vanishing(runs, figure))
    summary = {kind: {label: ratios(r) for label, r in runs.items()} for kind, runs in records.items()}
    report.sections += ["## First and last record", "",
                        "| fresh D | G after | minimax norm: start -> end (end/peak) "
                        "| -log D norm: start -> end (end/peak) | -log D relative variance: start -> end "
                        "| D accuracy at end |", "|---|---|---|---|---|---:|"]
    for kind, runs in records.items():
        for label, r in runs.items():
            s = summary[kind][label]
            report.sections.append(
                f"| {kind} | {label} | {fmt(r[0].minimax_mean)} -> {fmt(r[-1].minimax_mean)} ({fmt(s['minimax'])}) | "
                f"{fmt(r[0].nonsat_mean)} -> {fmt(r[-1].nonsat_mean)} ({fmt(s['nonsat'])}) | "
                f"{fmt(s['relvar_start'])} -> {fmt(s['relvar_end'])} | {r[-1].d_accuracy:.3f} |")
    report.departures = [f"digits at {scale.resolution}x{scale.resolution}, width {scale.width}, an epoch = "
                         f"{epoch_steps} steps (Arjovsky & Bottou: a DCGAN on LSUN bedrooms)."]
    if scale.fresh_d_steps < 4000:
        report.departures.append(f"the fresh D trains {scale.fresh_d_steps} steps (the paper: 4,000).")
    report.claims = vanishing_claims(summary["without noise"], summary["with noise"], seed)
    report.settings = {"epochs": list(scale.epochs), "steps per epoch": epoch_steps, "G steps": steps,
                       "fresh D steps": scale.fresh_d_steps, "record every": scale.record_every,
                       "probe batches": scale.probe_batches, "noise sigma": NOISE_SIGMA}
    report.commands.append(("the vanishing-gradient diagnostic of the final G",
                            f"fastreg diagnose {config.out} --d-steps {scale.fresh_d_steps} --record-every "
                            f"{scale.record_every} --seed {seed}"))
    report.results = {"records": {kind: {label: [x._asdict() for x in r] for label, r in runs.items()}
                                  for kind, runs in records.items()}, "ratios": summary}
    run.trainer = None
    report.seconds = time.perf_counter() - start
    return report


def ratios(records) -> dict:
    """End/peak ratios of the mean gradient norms (a fresh D first makes G's gradient grow; the theorems are
    about what happens as D approaches the optimal D), the -log D gradient's relative variance (tr Cov / ||mean||^2)
    at the first and the last record, and D's accuracy at the last record."""
    first, last = records[0], records[-1]

    def ratio(a: float, b: float) -> float:
        return b / a if a > 0 else math.nan

    peak_minimax = max(r.minimax_mean for r in records)
    peak_nonsat = max(r.nonsat_mean for r in records)
    return {"minimax": ratio(peak_minimax, last.minimax_mean), "nonsat": ratio(peak_nonsat, last.nonsat_mean),
            "relvar_start": first.nonsat_relvar, "relvar_end": last.nonsat_relvar, "d_accuracy": last.d_accuracy}


def vanishing_claims(plain: dict[str, dict], noisy: dict[str, dict], seed: int) -> list[Claim]:
    """``plain``/``noisy``: G stage -> ratios() of the fresh D without/with instance noise. Gate: only the stages
    whose fresh D (without noise) ends with accuracy >= D_ACCURACY_GATE count; with none, every claim is
    inconclusive."""
    reached = [s for s in plain if plain[s].get("d_accuracy", 1.0) >= D_ACCURACY_GATE]
    left_out = [s for s in plain if s not in reached]
    note = f"; left out (fresh D accuracy < {D_ACCURACY_GATE}): {', '.join(left_out)}" if left_out else ""
    stages = reached
    m = "; ".join(f"{s}: {fmt(plain[s]['minimax'])}" for s in stages) + note
    n = "; ".join(f"{s}: {fmt(plain[s]['nonsat'])} vs {fmt(plain[s]['minimax'])}" for s in stages) + note
    sp = "; ".join(f"{s}: {fmt(plain[s]['relvar_start'])} -> {fmt(plain[s]['relvar_end'])}" for s in stages) + note
    both = [s for s in stages if s in noisy]
    w = "; ".join(f"{s}: {fmt(noisy[s]['minimax'])} vs {fmt(plain[s]['minimax'])}" for s in both) + note
    claims = [
        Claim("The original cost's G gradient vanishes as a fresh D trains (Thm 2.4)",
              "norm falls by orders of magnitude for G after 1, 10 and 25 epochs", f"end/peak ratio: {m}", [seed],
              all_of([lower(plain[s]["minimax"], 0.1) for s in stages]),
              "for every frozen G (whose fresh D reached the gate), the minimax gradient norm at the last record is "
              "below 1/10 of its largest record."),
        Claim("The -log D cost's gradient does not vanish like the original one",
              "-log D gradient stays large (but unstable)", f"end/peak ratio -log D vs minimax: {n}", [seed],
              all_of([lower(plain[s]["minimax"], plain[s]["nonsat"]) for s in stages]),
              "for every frozen G, the -log D norm's end/peak ratio exceeds the minimax norm's."),
        Claim("The -log D gradient's variance grows relative to its mean (Thm 2.6)",
              "updates get noisy as D improves", f"tr Cov / ||mean||^2 of the -log D gradient, start -> end: {sp}",
              [seed], majority([lower(plain[s]["relvar_start"], plain[s]["relvar_end"]) for s in stages]),
              "relative variance tr Cov(g) / ||mean g||^2 of the -log D gradient over the probe batches larger at "
              "the last record than at the first, for a majority of frozen G's."),
        Claim("Instance noise keeps the original cost's gradient from vanishing",
              "noise convolves the densities so D cannot saturate", f"minimax end/peak, noise vs none: {w}", [seed],
              all_of([lower(plain[s]["minimax"], noisy[s]["minimax"]) for s in both]) if both else INCONCLUSIVE,
              "for every frozen G, the minimax norm's end/peak ratio is higher with noise than without."),
    ]
    if not stages:
        for c in claims:
            c.held = INCONCLUSIVE
            c.reason = (f"regime not reached: no fresh D reached accuracy {D_ACCURACY_GATE}, so D is far from the "
                        "optimal D the theorems are about; train the fresh D longer")
    return claims
