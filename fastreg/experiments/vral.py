"""Grewal, Hjelm, Bengio 2018, "Variance Regularizing Adversarial Learning": D-output histograms at
50:1 D:G updates and against a fixed generator, their overlap, and sample quality at 50:1."""

from __future__ import annotations

import copy
import os
import time

import torch
from tqdm.auto import tqdm

from ..diagnostics import plots
from ..diagnostics.discriminator import RealSampler, decision_threshold, generate, logits, output_histograms
from . import figures
from .budget import Scale
from .claims import Claim, all_of, fid_fell, finite, fmt, gate, lower
from .report import Report
from .runs import IMAGE_BATCH, image_config, sample_images, train_run

VARIANTS = ("gan", "ns", "bgan", "lsgan", "wgan", "vral")


# Grewal et al. 2018 (section 5 and their code): the DCGAN G and D with batch norm, every variant on the same
# optimizer (Adam 2e-4, betas (0.5, 0.999): fastreg departs from WGAN's RMSprop default so that only the loss
# differs), k = 50 D steps per G step, and for the fixed-G histograms a generator trained first with LSGAN for
# 5 epochs, then frozen while each variant's D trains against it.
ONE_OPTIMIZER = {"optimizer": "adam", "lr_d": 2e-4, "lr_g": 2e-4, "betas": (0.5, 0.999)}
FIXED_G_VARIANT = "lsgan"


def histograms_of(trainer, samples: int, seed: int) -> dict:
    real = RealSampler(trainer.real.dataset, seed)(samples)
    fake = generate(trainer.G, samples, torch.Generator().manual_seed(seed))
    v_real, v_fake = logits(trainer.D, real), logits(trainer.D, fake)
    if not (torch.isfinite(v_real).all() and torch.isfinite(v_fake).all()):
        return {}
    c = trainer.config
    return output_histograms(v_real, v_fake, threshold=decision_threshold(c.variant, c.vral_mu_real, c.vral_mu_fake))


def vral(out: str, scale: Scale, data: str) -> Report:
    from ..train import build

    start, seed = time.perf_counter(), scale.seeds[0]
    k = scale.critic_ratio
    base = dict(d_norm="batch", **ONE_OPTIMIZER)
    probe = image_config(scale, data, os.path.join(out, "runs", "fixed-g-lsgan"), seed)
    epoch_steps = scale.epoch_steps or max(1, len(build.dataset_of(probe)) // IMAGE_BATCH)
    g_steps = scale.fixed_g_epochs * epoch_steps
    report = Report("vral", "Grewal et al. 2018: D outputs and sample quality at 50:1", out, scale, data, (seed,),
                    description=f"Six variants, DCGAN with batch norm in D, all on one optimizer (Adam 2e-4, "
                                f"betas (0.5, 0.999)): {', '.join(VARIANTS)} (`ns` is the paper's 'proxy' loss). "
                                f"(1) {k}:1 D:G updates for {scale.critic_g_steps} generator steps; (2) a fixed "
                                f"generator, trained first with LSGAN for {scale.fixed_g_epochs} epochs "
                                f"({g_steps} steps), then frozen (learning rate 0) while each variant's D trains "
                                f"{scale.fixed_g_d_steps} steps against it. D's outputs on {scale.hist_samples} "
                                "real and generated samples; overlap coefficient = sum over shared bins of "
                                "min(real share, fake share); D's accuracy at the loss's own threshold (0 for "
                                "the logistic losses, (a+b)/2 for LSGAN, (mu_r+mu_f)/2 for VRAL, the midpoint "
                                "of the two means for WGAN).")
    report.departures = ["the fixed-G runs' `fastreg train` commands start from a random G; the experiment loads the "
                         "pretrained G first.",
                         f"{scale.critic_g_steps} generator steps at {k}:1 and {scale.fixed_g_d_steps} fixed-G D steps "
                         f"at {scale.resolution}x{scale.resolution} (Grewal et al.: full training, >= 5k D steps).",
                         "WGAN on Adam instead of its RMSprop, so that only the loss differs between the variants."]
    pre_config = image_config(scale, data, probe.out, seed, steps=g_steps, variant=FIXED_G_VARIANT, **base)
    pretrained = train_run(f"fixed G: {FIXED_G_VARIANT}, {scale.fixed_g_epochs} epochs", pre_config,
                           keep_trainer=True)
    report.runs.append(pretrained)
    fixed_state = None if pretrained.diverged else copy.deepcopy(pretrained.trainer.G.state_dict())
    fixed_trained = fixed_state is not None and fid_fell(pretrained.curve("fid"))
    pretrained.trainer = None
    hist = {"ratio": {}, "fixed": {}}
    fid, first_fid, samples = {}, {}, {}
    jobs = [(v, mode) for v in VARIANTS for mode in ("ratio", "fixed")]
    for variant, mode in tqdm(jobs, disable=None, desc="vral", unit="run"):
        if mode == "ratio":
            steps, extra = scale.critic_g_steps, {"n_critic": k}
        else:
            if fixed_state is None:
                continue
            steps, extra = scale.fixed_g_d_steps, {"n_critic": 1, "lr_g": 0.0, "ema": 0.0, "eval_every": 0}
        config = image_config(scale, data, os.path.join(out, "runs", f"{variant}-{mode}"), seed, steps=steps,
                              variant=variant, **{**base, **extra})
        load = (lambda t: t.G.load_state_dict(fixed_state)) if mode == "fixed" else None
        run = train_run(f"{variant} {'%d:1' % k if mode == 'ratio' else 'fixed G'}", config, keep_trainer=True,
                        before_train=load)
        report.runs.append(run)
        h = {} if run.diverged else histograms_of(run.trainer, scale.hist_samples, seed)
        if h:
            hist[mode][variant] = h
        if mode == "ratio":
            fid[variant] = run.final("fid")
            curve = run.curve("fid")
            first_fid[variant] = curve[0][1] if curve else float("nan")
            samples[variant] = sample_images(run.trainer, 32)
        run.trainer = None
    overlap = {mode: {v: h["overlap"] for v, h in hs.items()} for mode, hs in hist.items()}  # output_histograms'
    for mode, caption in (("ratio", f"D-output histograms after {k}:1 training"),
                          ("fixed", "D-output histograms for a fixed (LSGAN-trained) G")):
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
    report.sections += ["", f"Fixed G: final FID {fmt(pretrained.final('fid'))} after {g_steps} LSGAN steps "
                        f"(trained: {'yes' if fixed_trained else 'no'})."]
    ratio_trained = any(finite(fid[v], first_fid[v]) and fid[v] <= TRAINED_FRACTION * first_fid[v] for v in fid)
    report.claims = vral_claims(fid, overlap["ratio"], overlap["fixed"], seed, k, ratio_trained, fixed_trained)
    report.settings = {"variants": list(VARIANTS), "D:G ratio": k, "G steps at ratio": scale.critic_g_steps,
                       "fixed-G D steps": scale.fixed_g_d_steps, "fixed-G LSGAN steps": g_steps,
                       "histogram samples": scale.hist_samples, "optimizer": "adam 2e-4, betas (0.5, 0.999)"}
    report.results = {"final_fid": fid, "first_fid": first_fid, "overlap": overlap,
                      "fixed_g": {"final_fid": pretrained.final("fid"), "trained": fixed_trained},
                      "histogram_stats": {m: {v: {s: h[s] for s in ("real_mean", "real_std", "fake_mean", "fake_std",
                                                                      "accuracy", "threshold")} for v, h in hs.items()}
                                          for m, hs in hist.items()}}
    report.seconds = time.perf_counter() - start
    return report


TRAINED_FRACTION = 0.5   # a k:1 run learned something when its final FID is at most half its first evaluation's


def vral_claims(fid: dict[str, float], overlap_ratio: dict[str, float], overlap_fixed: dict[str, float], seed: int,
                k: int = 50, ratio_trained: bool = True, fixed_trained: bool = True) -> list[Claim]:
    """Gates: ``ratio_trained`` (some variant's FID at k:1 fell to half its first evaluation: the budget let G
    learn) for the k:1 claims, ``fixed_trained`` (the fixed G's LSGAN pretraining lowered its FID) for the
    fixed-G claim."""
    others = [v for v in fid if v != "vral"]

    def higher(a, b):
        return a > b if finite(a, b) else None

    ratio = [
        Claim(f"Only VRAL survives {k}:1 training", "VRAL gives good samples at 50:1; the other losses collapse",
              "FID: " + "; ".join(f"{v} {fmt(f)}" for v, f in fid.items()), [seed],
              all_of([lower(fid.get("vral"), fid[v]) for v in others]),
              f"VRAL's FID after {k}:1 training lower than every other variant's."),
        Claim(f"VRAL keeps D's real and fake outputs overlapping at {k}:1",
              "other losses separate the histograms completely", "overlap: " + "; ".join(
                  f"{v} {fmt(o)}" for v, o in overlap_ratio.items()), [seed],
              all_of([higher(overlap_ratio.get("vral"), overlap_ratio.get(v)) for v in others]),
              f"VRAL's overlap coefficient after {k}:1 training higher than every other variant's."),
    ]
    fixed = [
        Claim("Against a fixed G, VRAL's D outputs still overlap", "GAN's D separates them; VRAL's does not",
              "overlap: " + "; ".join(f"{v} {fmt(o)}" for v, o in overlap_fixed.items()), [seed],
              all_of([higher(overlap_fixed.get("vral"), overlap_fixed.get(v)) for v in others]),
              "VRAL's overlap coefficient against a fixed G higher than every other variant's."),
    ]
    return (gate(ratio, ratio_trained, f"regime not reached: no variant's FID fell to half its first evaluation at "
                                       f"{k}:1, so G learned nothing to collapse from; needs more G steps")
            + gate(fixed, fixed_trained, "regime not reached: the fixed G's LSGAN pretraining did not lower its FID"))
