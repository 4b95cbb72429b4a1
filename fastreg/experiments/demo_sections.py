"""The demo's report sections that show every seed: the toy's plane picture, the digits samples and the run table
with the toy scores' own sampling spread (used by :mod:`fastreg.experiments.demo`)."""

from __future__ import annotations

import os

import torch

from .. import data
from ..diagnostics.plots import plot_mixture_plane


def plane_figure(out: str, by_method: dict, toy_data: str, scatter_samples: int) -> tuple[str, str]:
    """Every toy run's final samples projected onto the mixture's plane, one row per method, one panel per seed
    (caption, path)."""
    mixture = data.get_dataset(toy_data, seed=0)
    normal = torch.linalg.cross(mixture.basis[0], mixture.basis[1])
    panels, seeds = {}, max(len(runs) for runs in by_method.values())
    for method, runs in by_method.items():
        for seed, r in sorted(runs.items()):
            q = r["quality"]
            offset = ((r["samples"].double() - mixture.modes.mean(dim=0)) @ normal).abs().mean().item()
            panels[f"{method}, seed {seed}"] = {
                "samples": r["samples"],
                "title": f"{q['modes_covered']}/{mixture.n_modes} modes covered, W1 {q['wasserstein_1']:.3f} ± "
                         f"{q['wasserstein_1_std']:.3f}, off the plane {offset:.3f}"}
    path = plot_mixture_plane(panels, mixture, os.path.join(out, "toy3d_plane.png"), columns=seeds)
    return (f"Final samples of every toy run (rows: methods, columns: seeds), from the generator itself (the "
            f"roth-toy protocol keeps no EMA): {scatter_samples} generated points projected onto the mixture's "
            "plane; red circles: each mode's 3-sigma region (where a sample counts as high quality); grey: real "
            "samples. Panel titles: the scores of the run table below.", path)


def samples_section(by_method: dict) -> list[str]:
    """The final samples of every digits run (all seeds), of the EMA generator."""
    some = next(iter(next(iter(by_method.values())).values()))
    lines = [f"Final samples of every run, from the EMA generator (the exponential moving average of G's weights; "
             f"its decay, ramped in, was {some['ema_decay']:.4g} at the last step).", ""]
    for method, runs in by_method.items():
        cells = [f"![{os.path.basename(r['config'].out)}]({os.path.basename(r['config'].out)}/samples/"
                 f"step_{r['config'].steps:06d}.png)" for _, r in sorted(runs.items())]
        lines += [f"| {method} | " + " | ".join(f"seed {s}" for s in sorted(runs)) + " |",
                  "|" + "---|" * (len(cells) + 1), "| EMA samples | " + " | ".join(cells) + " |", ""]
    return lines


def run_table(dataset: str, by_method: dict, extractor: str, spread, failures: dict | None = None) -> list[str]:
    """Every run's numbers, then each side's mean ± std over seeds (``spread`` formats it). Image runs (``failures``
    given: run folder -> why it failed by the stability grid's rule, or None): FID, KID, classes covered and the
    rule's verdict. Toy runs: W1 as the mean ± std over independent draws (the estimate's own noise), its
    real-data floor, the modes covered on all draws pooled with the range over draws."""
    image = failures is not None
    quality = (f"| FID[{extractor}] | KID[{extractor}] | classes covered | failure rule |" if image
               else "| W1 (mean over draws) | W1 spread over draws (std) | W1 floor (real vs real) | modes covered "
                    "| modes per draw (min-max) | high quality |")
    header = (f"| run | seed | steps | wall time (s) | steps/s | final D loss | final G loss {quality} "
              "evaluation time (s) |")
    lines = [header, "|---|" + "---:|" * (header.count("|") - 2)]

    def metrics(r: dict) -> list:
        if image:
            final = r["final_eval"]
            covered = "-" if r["covered"] is None else f"{r['covered']} of 10"
            return [final[f"fid/{extractor}"], final[f"kid/{extractor}"], covered,
                    f"failed: {failures[r['config'].out]}" if failures[r["config"].out] else "trained"]
        q = r["quality"]
        return [q["wasserstein_1"], q["wasserstein_1_std"], q["wasserstein_1_floor"], q["modes_covered"],
                f"{q['modes_min']}-{q['modes_max']}", q["high_quality"]]

    def row(r: dict) -> list:
        return [r["seconds"], r["steps_per_second"], r["d_loss"], r["g_loss"], *metrics(r), r["eval_seconds"]]

    def cell(v) -> str:
        return v if isinstance(v, str) else f"{v:.4g}"

    for runs in by_method.values():
        for seed, r in sorted(runs.items()):
            lines.append(f"| {os.path.basename(r['config'].out)} | {seed} | {r['config'].steps} | "
                         + " | ".join(cell(v) for v in row(r)) + " |")
    for method, runs in by_method.items():
        columns = list(zip(*[row(r) for r in runs.values()]))
        lines.append(f"| **{method}, mean ± std** | {len(runs)} seeds | - | "
                     + " | ".join("-" if isinstance(c[0], str) else spread(list(c)) for c in columns) + " |")
    note = ""
    if not image:
        q = next(iter(next(iter(by_method.values())).values()))["quality"]
        note = (f" Toy scores, on samples drawn after training: W1 is the exact Wasserstein-1 distance between "
                f"{q['w1_samples']} generated and {q['w1_samples']} mixture points (the in-run evaluation's "
                f"estimator), averaged over {q['repeats']} independent draws; its spread is the standard deviation "
                "over those draws, the sampling noise of one estimate, against which a difference between the sides "
                "has to be read. The floor is two independent mixture draws of that size against each other (what "
                f"the data itself scores). Modes covered: on all {q['repeats'] * q['w1_samples']} points pooled.")
    lines += ["", "Final D and G losses: the last logging window's means. The evaluation time (set-up included: "
              "training the classifier unless cached, real features) is part of the wall time." + note, ""]
    return lines
