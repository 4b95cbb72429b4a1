"""Grewal, Hjelm, Bengio 2018, "Variance Regularizing Adversarial Learning": D-output histograms at
50:1 D:G updates and against a fixed generator, their overlap, and sample quality at 50:1."""

from __future__ import annotations

import os
import time

import torch
from tqdm.auto import tqdm

from .. import plots
from ..diagnostics import RealSampler, generate, logits, output_histograms
from . import figures
from .budget import Scale
from .claims import Claim, all_of, finite, fmt, lower
from .report import Report
from .runs import image_config, sample_images, train_run

VARIANTS = ("gan", "ns", "bgan", "lsgan", "wgan", "vral")


def histograms_of(trainer, samples: int, seed: int) -> dict:
    real = RealSampler(trainer.real.dataset, seed)(samples)
    fake = generate(trainer.G, samples, torch.Generator().manual_seed(seed))
    v_real, v_fake = logits(trainer.D, real), logits(trainer.D, fake)
    if not (torch.isfinite(v_real).all() and torch.isfinite(v_fake).all()):
        return {}
    return output_histograms(v_real, v_fake)


def vral(out: str, scale: Scale, data: str) -> Report:
    start, seed = time.perf_counter(), scale.seeds[0]
    k = scale.critic_ratio
    report = Report("vral", "Grewal et al. 2018: D outputs and sample quality at 50:1", out, scale, data, (seed,),
                    description=f"Six variants, D without batch norm (a sample's logit must not depend on its batch): "
                                f"{', '.join(VARIANTS)} (`ns` is the paper's 'proxy' loss). (1) {k}:1 D:G updates "
                                f"for {scale.critic_g_steps} generator steps; (2) a fixed generator (its learning "
                                f"rate 0) and {scale.fixed_g_d_steps} D steps. D's outputs on {scale.hist_samples} "
                                "real and generated samples; overlap coefficient = sum over shared bins of "
                                "min(real share, fake share).")
    hist = {"ratio": {}, "fixed": {}}
    fid, samples = {}, {}
    jobs = [(v, mode) for v in VARIANTS for mode in ("ratio", "fixed")]
    for variant, mode in tqdm(jobs, desc="vral", unit="run"):
        if mode == "ratio":
            steps, extra = scale.critic_g_steps, {"n_critic": k}
        else:
            steps, extra = scale.fixed_g_d_steps, {"n_critic": 1, "lr_g": 0.0, "ema": 0.0, "eval_every": 0}
        config = image_config(scale, data, os.path.join(out, "runs", f"{variant}-{mode}"), seed, steps=steps,
                              variant=variant, d_norm="none", **extra)
        run = train_run(f"{variant} {'%d:1' % k if mode == 'ratio' else 'fixed G'}", config, keep_trainer=True)
        report.runs.append(run)
        h = {} if run.diverged else histograms_of(run.trainer, scale.hist_samples, seed)
        if h:
            hist[mode][variant] = h
        if mode == "ratio":
            fid[variant] = run.final("fid")
            samples[variant] = sample_images(run.trainer, 32)
        run.trainer = None
    overlap = {mode: {v: h["overlap"] for v, h in hs.items()} for mode, hs in hist.items()}  # output_histograms'
    for mode, caption in (("ratio", f"D-output histograms after {k}:1 training"),
                          ("fixed", "D-output histograms for a fixed G")):
        if hist[mode]:
            report.figure(f"{caption} (blue: real, red: generated):",
                          plots.plot_histograms(hist[mode], os.path.join(out, f"histograms_{mode}.png")))
    report.figure(f"Samples of each variant after {k}:1 training (EMA generator):",
                  figures.sample_panels(samples, os.path.join(out, "samples.png")))
    report.sections += ["## Overlap and FID", "", f"| variant | overlap, {k}:1 | overlap, fixed G | FID, {k}:1 |",
                        "|---|---:|---:|---:|"]
    for v in VARIANTS:
        report.sections.append(f"| {v} | {fmt(overlap['ratio'].get(v))} | {fmt(overlap['fixed'].get(v))} | "
                               f"{fmt(fid.get(v))} |")
    report.claims = vral_claims(fid, overlap["ratio"], overlap["fixed"], seed, k)
    report.settings = {"variants": list(VARIANTS), "D:G ratio": k, "G steps at ratio": scale.critic_g_steps,
                       "fixed-G D steps": scale.fixed_g_d_steps, "histogram samples": scale.hist_samples}
    report.results = {"final_fid": fid, "overlap": overlap,
                      "histogram_stats": {m: {v: {s: h[s] for s in ("real_mean", "real_std", "fake_mean", "fake_std",
                                                                      "accuracy")} for v, h in hs.items()}
                                          for m, hs in hist.items()}}
    report.seconds = time.perf_counter() - start
    return report


def vral_claims(fid: dict[str, float], overlap_ratio: dict[str, float], overlap_fixed: dict[str, float], seed: int,
                k: int = 50) -> list[Claim]:
    others = [v for v in fid if v != "vral"]

    def higher(a, b):
        return a > b if finite(a, b) else None

    return [
        Claim(f"Only VRAL survives {k}:1 training", "VRAL gives good samples at 50:1; the other losses collapse",
              "FID: " + "; ".join(f"{v} {fmt(f)}" for v, f in fid.items()), [seed],
              all_of([lower(fid.get("vral"), fid[v]) for v in others]),
              f"VRAL's FID after {k}:1 training lower than every other variant's."),
        Claim(f"VRAL keeps D's real and fake outputs overlapping at {k}:1",
              "other losses separate the histograms completely", "overlap: " + "; ".join(
                  f"{v} {fmt(o)}" for v, o in overlap_ratio.items()), [seed],
              all_of([higher(overlap_ratio.get("vral"), overlap_ratio.get(v)) for v in others]),
              f"VRAL's overlap coefficient after {k}:1 training higher than every other variant's."),
        Claim("Against a fixed G, VRAL's D outputs still overlap", "GAN's D separates them; VRAL's does not",
              "overlap: " + "; ".join(f"{v} {fmt(o)}" for v, o in overlap_fixed.items()), [seed],
              all_of([higher(overlap_fixed.get("vral"), overlap_fixed.get(v)) for v in others]),
              "VRAL's overlap coefficient against a fixed G higher than every other variant's."),
    ]
