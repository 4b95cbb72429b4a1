"""Sajjadi, Parascandolo, Mehrjou, Schölkopf 2018, "Tempered Adversarial Networks": GAN, LSGAN and
WGAN-GP with and without the lens, over several seeds.

Protocol (the paper, section 4): the GAN is trained with the non-saturating -log D generator loss (``ns``;
the minimax ``gan`` loss is not what their GAN uses); the lens schedule lambda_t = 1 - sin(t pi / 2K) reaches
the identity at K, which the paper sets well inside the run (here K = a quarter of the run unless the scale
sets it), so the final FIDs measure the generator after the lens has stopped acting. Departure: a narrower
lens (``Scale.lens_width``) and far fewer steps than the paper's 100k at the tiny, quick and cpu scales.
"""

from __future__ import annotations

import math
import os
import statistics
import time

from tqdm.auto import tqdm

from . import figures
from .budget import Scale
from .claims import INCONCLUSIVE, MIN_SEEDS, Claim, finite, fmt, gate, lower, majority
from .report import Report
from .runs import image_config, train_run

VARIANTS = ("ns", "lsgan", "wgan-gp")
IDENTITY_GATE = 0.5   # the lens must reach the identity by this fraction of the run


def tempered(out: str, scale: Scale, data: str) -> Report:
    start, seeds = time.perf_counter(), scale.seeds
    steps = scale.tempered_steps
    lens_k = scale.lens_schedule()
    report = Report("tempered", "Sajjadi et al. 2018: the Tempered GAN lens", out, scale, data, seeds,
                    description=f"Each variant (DCGAN, default D; the GAN with the non-saturating G loss, as the "
                                f"paper) with and without the lens (8 residual blocks of width {scale.lens_width}, "
                                f"lambda_t = 1 - sin(t pi / 2K) with K = {lens_k}, so the lens returns to the "
                                f"identity by step K), {steps} generator steps, seeds {', '.join(map(str, seeds))}. "
                                f"The claims are decided only if K <= {IDENTITY_GATE} x the run's steps.")
    fid = {v: {"plain": [], "lens": []} for v in VARIANTS}
    curves = {v: {} for v in VARIANTS}
    jobs = [(v, lens, s) for v in VARIANTS for lens in (False, True) for s in seeds]
    for variant, lens, seed in tqdm(jobs, disable=None, desc="tempered", unit="run"):
        kind = "lens" if lens else "plain"
        extra = {"lens": True, "lens_k": lens_k, "lens_width": scale.lens_width} if lens else {}
        config = image_config(scale, data, os.path.join(out, "runs", f"{variant}-{kind}-seed{seed}"), seed,
                              steps=steps, variant=variant, **extra)
        run = train_run(f"{variant} {kind} seed {seed}", config)
        report.runs.append(run)
        fid[variant][kind].append(run.final("fid"))
        curves[variant][f"{kind} s{seed}"] = run.curve("fid")
    report.figure("FID during training per variant, each seed a line (log scale):",
                  figures.curve_panels(curves, os.path.join(out, "fid_curves.png"), "FID", log_y=True, columns=3))
    report.figure("Final FID (bars: mean over seeds, dots: seeds, red cross: a diverged run):",
                  figures.grouped_bars({v: {"without lens": fid[v]["plain"], "with lens": fid[v]["lens"]}
                                        for v in VARIANTS}, os.path.join(out, "final_fid.png"), "final FID"))
    report.sections += ["## Final FID over seeds", "", "| variant | without lens: mean (std) | with lens: mean (std) | "
                        "seeds without | seeds with |", "|---|---:|---:|---|---|"]
    for v in VARIANTS:
        without, with_lens = summary(fid[v]["plain"]), summary(fid[v]["lens"])
        report.sections.append(f"| {v} | {fmt(without[0])} ({fmt(without[1])}) | {fmt(with_lens[0])} "
                               f"({fmt(with_lens[1])}) | "
                               f"{', '.join(fmt(x) for x in fid[v]['plain'])} | "
                               f"{', '.join(fmt(x) for x in fid[v]['lens'])} |")
    report.departures = [f"{steps} generator steps with K = {lens_k} (the paper: K = 100k), lens width "
                         f"{scale.lens_width} (the paper: 64), {scale.resolution}x{scale.resolution} {data}."]
    report.claims = tempered_claims(fid, list(seeds), lens_k / steps)
    report.settings = {"variants": list(VARIANTS), "steps": steps, "lens K": lens_k, "lens width": scale.lens_width}
    report.results = {"final_fid": fid}
    report.seconds = time.perf_counter() - start
    return report


def summary(values: list[float]) -> tuple[float, float]:
    """(mean, std) over seeds; inf mean when a run diverged, nan std with fewer than 2 finite values."""
    if not values:
        return math.nan, math.nan
    if not finite(*values):
        return math.inf, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def tempered_claims(fid: dict[str, dict[str, list[float]]], seeds: list[int],
                    identity_at: float = 0.0) -> list[Claim]:
    """``fid[variant]["plain"|"lens"]``: final FIDs over seeds (paired by seed); ``identity_at``: K over the
    run's steps, the fraction of the run after which the lens is the identity (gate: at most IDENTITY_GATE)."""
    variants = list(fid)
    means = {v: (summary(fid[v]["plain"])[0], summary(fid[v]["lens"])[0]) for v in variants}
    stds = {v: (summary(fid[v]["plain"])[1], summary(fid[v]["lens"])[1]) for v in variants}
    enough = len(seeds) >= MIN_SEEDS

    def better_every_seed(v: str) -> bool | None:
        pairs = list(zip(fid[v]["lens"], fid[v]["plain"]))
        outcomes = [lower(a, b) for a, b in pairs]
        return None if not enough or None in outcomes else all(outcomes)

    spread = [lower(stds[v][1], stds[v][0]) if finite(*stds[v]) else None for v in variants]
    claims = [
        Claim("The lens improves FID", "lens improves FID, e.g. DCGAN on MNIST 42 -> 22",
              "mean FID without -> with lens: " + "; ".join(f"{v} {fmt(a)} -> {fmt(b)}" for v, (a, b) in means.items()),
              seeds, majority([better_every_seed(v) for v in variants]),
              f"final FID lower with the lens than without on every seed (paired by seed, >= {MIN_SEEDS} seeds) "
              f"for a majority of the {len(variants)} variants."),
        Claim("The lens makes training more robust to the seed", "smaller spread of FID over seeds with the lens",
              "FID std over seeds without -> with lens: " + "; ".join(f"{v} {fmt(a)} -> {fmt(b)}"
                                                                   for v, (a, b) in stds.items()),
              seeds, majority(spread) if enough else INCONCLUSIVE,
              f"standard deviation of the final FID over seeds smaller with the lens for a majority of the "
              f"{len(variants)} variants (needs at least {MIN_SEEDS} seeds)."),
    ]
    return gate(claims, identity_at <= IDENTITY_GATE,
                f"regime not reached: the lens reaches the identity only at {identity_at:.0%} of the run "
                f"(gate: by {IDENTITY_GATE:.0%}), so the final FID still sees the lens's effect on D")
