"""Plots of runs (matplotlib, written as PNG): training curves from metrics.jsonl, and the diagnostics' figures."""

from __future__ import annotations

import math
import os

from ..atomic import atomic_write
from ..train.metrics_log import read_metrics


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# Titles and y-axis labels in words for the trainer's logged keys (metrics.jsonl); FID/KID keys are labelled by
# metric_label, which names the extractor.
METRIC_LABELS = {
    "d_loss": ("D loss", "D's loss, penalty term included"),
    "g_loss": ("G loss", "G's loss"),
    "d_grad_norm": ("D gradient norm", "||grad of D's loss wrt D's weights||"),
    "g_grad_norm": ("G gradient norm", "||grad of G's loss wrt G's weights||"),
    "penalty": ("penalty Omega", "regularizer value (before its weight)"),
    "gamma": ("penalty weight gamma_t", "gamma_t"),
    "wasserstein_1": ("Wasserstein-1 to the mixture", "W1 (exact, lower is better)"),
    "high_quality": ("high-quality fraction", "fraction within 3 sigma of a mode"),
    "modes_covered": ("modes covered", "modes"),
}


def metric_label(key: str) -> tuple[str, str]:
    """(title, y-axis label) of a logged key, in words."""
    kind, _, extractor = key.partition("/")
    if kind == "fid" and extractor:
        return f"FID [{extractor}]", "FID (lower is better)"
    if kind == "kid" and extractor:
        return f"KID [{extractor}]", "KID (polynomial-kernel MMD^2)"
    return METRIC_LABELS.get(key, (key, key))


def _points(run_dir: str, key: str) -> list[tuple[int, float]]:
    """(step, value) of the records with a finite number under ``key`` and a numeric ``step`` (a record
    without one, edited or from elsewhere, is left out, not a crash)."""
    def number(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    return [(r["step"], r[key]) for r in read_metrics(run_dir) if number(r.get(key)) and number(r.get("step"))]


def plot_seed_curves(groups: dict[str, list[str]], keys: list[str], path: str, log_y: tuple[str, ...] = (),
                     each_run: bool = False) -> str:
    """One panel per metric key, one line per group of runs (label -> run folders, e.g. one per seed): the mean
    over the group's runs at the steps all of them logged, with a band from their minimum to their maximum;
    ``each_run``: also every run's own curve, thin, in the group's colour (so no seed hides in a mean)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for i, (label, run_dirs) in enumerate(groups.items()):
            curves = [dict(_points(run_dir, key)) for run_dir in run_dirs]
            steps = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
            if not steps:
                continue
            values = [[c[t] for c in curves] for t in steps]
            seeds = f" ({len(run_dirs)} seeds)" if len(run_dirs) > 1 else ""
            ax.plot(steps, [sum(v) / len(v) for v in values], label=label + seeds, linewidth=1.2, color=f"C{i}")
            if len(run_dirs) > 1:
                ax.fill_between(steps, [min(v) for v in values], [max(v) for v in values], alpha=0.2, color=f"C{i}")
            if each_run and len(run_dirs) > 1:
                for curve in curves:
                    own = sorted(curve.items())
                    ax.plot([t for t, _ in own], [v for _, v in own], linewidth=0.6, alpha=0.7, color=f"C{i}",
                            linestyle=":")
        title, ylabel = metric_label(key)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.set_xlabel("generator step")
        if key in log_y:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    return save_figure(fig, plt, path)


def plot_mixture_plane(panels: dict[str, dict], mixture, path: str, columns: int | None = None) -> str:
    """Toy samples projected onto the plane of a (3-D, planar) Gaussian mixture, one panel per entry
    ``label -> {"samples": [N, 3], "title": str}`` (``columns`` panels a row; default: all in one row):
    generated samples, real samples (grey), each mode's 3-sigma circle (the high-quality region) and its
    number. Coordinates: the offsets from the modes' mean along the mixture's two plane directions
    (``mixture.basis``)."""
    plt = pyplot()
    basis = mixture.basis.double()
    center = mixture.modes.mean(dim=0)
    real = (mixture.__class__(mixture.modes, mixture.sigma, seed=12345, basis=mixture.basis).sample(2000).double()
            - center) @ basis.T
    modes = (mixture.modes - center) @ basis.T
    columns = columns or len(panels)
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 4.2 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (label, panel) in zip(axes.flat, panels.items()):
        points = (panel["samples"].double().cpu() - center) @ basis.T
        ax.scatter(*real.T.numpy(), s=3, c="0.6", label="data", zorder=1)
        ax.scatter(*points.T.numpy(), s=3, c="C0", alpha=0.5, label=f"generated ({len(points)})", zorder=2)
        for k, (x, y) in enumerate(modes.tolist()):
            ax.add_patch(plt.Circle((x, y), 3 * mixture.sigma, fill=False, color="C3", linewidth=1, zorder=3))
            ax.annotate(str(k + 1), (x, y), xytext=(6, 6), textcoords="offset points", fontsize=8, color="C3")
        reach = 1.6 * float(modes.norm(dim=1).max())
        ax.set_xlim(-reach, reach)
        ax.set_ylim(-reach, reach)
        ax.set_aspect("equal")
        ax.set_title(f"{label}\n{panel.get('title', '')}", fontsize=9)
        ax.set_xlabel("in-plane coordinate 1")
        ax.set_ylabel("in-plane coordinate 2")
        ax.legend(loc="lower right", fontsize=7)
    return save_figure(fig, plt, path)


def plot_histograms(histograms: dict[str, dict], path: str) -> str:
    """One panel per discriminator: its logit histograms on real and fake samples (VRAL figs. 1-2)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(histograms), figsize=(4.2 * len(histograms), 3.2), squeeze=False)
    for ax, (label, h) in zip(axes[0], histograms.items()):
        edges = h["edges"]
        for kind, color in (("real", "C0"), ("fake", "C3")):
            ax.stairs(h[kind], edges, fill=True, alpha=0.5, color=color, label=kind)
        overlap = f", overlap {h['overlap']:.2f}" if "overlap" in h else ""
        ax.set_title(f"{label}\n(accuracy {h['accuracy']:.2f}{overlap})", fontsize=9)
        ax.set_xlabel("D logit v (> 0: called real)")
        ax.set_ylabel("samples per bin")
    axes[0][0].legend(fontsize=8)
    return save_figure(fig, plt, path)


def plot_interpolation(profiles: dict[str, dict], path: str) -> str:
    """Mean logit and mean input-gradient norm along x(t) = t x_r + (1 - t) x_f (VRAL fig. 3)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.2))
    for label, profile in profiles.items():
        axes[0].plot(profile["t"], profile["mean_logit"], label=label)
        axes[1].plot(profile["t"], profile["mean_grad_norm"], label=label)
    for ax, title in zip(axes, ("mean D logit", "mean ||grad_x D||")):
        ax.set_title(title)
        ax.set_ylabel(title + " over the pairs", fontsize=8)
        ax.set_xlabel("t (0: generated, 1: real)")
        ax.axvspan(0, 1, color="0.9", zorder=0)
        ax.grid(alpha=0.3)
    axes[1].set_yscale("log")
    axes[0].legend(fontsize=8)
    return save_figure(fig, plt, path)


def log_band(mean: float, std: float) -> tuple[float, float]:
    r"""The +-1 std band of a positive quantity on a log axis: :math:`(m e^{-s/m}, m e^{s/m})`.

    :math:`s/m` is the first-order (delta-method) std of :math:`\log x` for mean m and std s, so the band is
    symmetric around m on the log axis, close to m +- s when s << m, and never reaches 0: the linear band
    m - s, clipped at a tiny floor, drew spikes to 1e-30 whenever s >= m.
    """
    if not mean > 0:
        return mean, mean
    spread = math.exp(min(std / mean, 50.0))
    return mean / spread, mean * spread


def plot_vanishing(runs: dict[str, list], path: str) -> str:
    """G gradient norms (mean over latent batches, band: :func:`log_band` of their std) vs the D iterations of a
    fresh D, log scale (Arjovsky & Bottou 2017, figs. 2-3): the minimax cost's and the -log D cost's."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.4))
    for label, records in runs.items():
        steps = [r.d_step for r in records]
        for ax, kind in zip(axes, ("minimax", "nonsat")):
            mean = [getattr(r, f"{kind}_mean") for r in records]
            band = [log_band(m, getattr(r, f"{kind}_std")) for m, r in zip(mean, records)]
            ax.plot(steps, mean, label=label)
            ax.fill_between(steps, [low for low, _ in band], [high for _, high in band], alpha=0.2)
    for ax, title in zip(axes, ("minimax cost log(1 - D(G(z)))", "non-saturating cost -log D(G(z))")):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("D iterations (fresh D, G frozen)")
        ax.set_ylabel("||grad_theta cost|| (mean, ±1 std band)", fontsize=8)
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return save_figure(fig, plt, path)


def plot_cross_test(result: dict, names: tuple[str, str], path: str) -> str:
    """Roth's cross-test: each D's confusion matrix on (real, own fakes), and the cross false-positive rates
    (the fraction of the other generator's samples each D calls real)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(11.5, 3.4))
    for ax, side, name in zip(axes, "ab", names):
        c = result[f"confusion_{side}"]
        rows = [[c["real_called_real"], c["real_called_fake"]], [c["fake_called_real"], c["fake_called_fake"]]]
        totals = [max(sum(row), 1) for row in rows]
        ax.imshow([[n / t for n in row] for row, t in zip(rows, totals)], vmin=0, vmax=1, cmap="Blues")
        for i, row in enumerate(rows):
            for j, n in enumerate(row):
                ax.text(j, i, f"{n}\n({n / totals[i]:.2f})", ha="center", va="center", fontsize=9,
                        color="white" if n / totals[i] > 0.5 else "black")
        ax.set_xticks([0, 1], ["called real", "called fake"])
        ax.set_yticks([0, 1], ["real", "own fakes"])
        ax.set_title(f"D of {os.path.basename(os.path.normpath(name))}\n(balanced accuracy "
                     f"{result[f'balanced_accuracy_{side}']:.2f})", fontsize=9)
        ax.set_xlabel("D's call (logit > 0: real)")
        ax.set_ylabel("sample source")
    rates = [result["cross_false_positive_a"], result["cross_false_positive_b"]]
    labels = [f"D of {os.path.basename(os.path.normpath(n))}\non the other's fakes" for n in names]
    axes[2].bar(labels, rates, color=["C0", "C1"])
    for i, rate in enumerate(rates):
        axes[2].text(i, rate, f"{rate:.3f}", ha="center", va="bottom", fontsize=9)
    axes[2].set_ylim(0, 1.05)
    axes[2].set_title("cross false-positive rate\n(other model's fakes called real)", fontsize=9)
    axes[2].tick_params(axis="x", labelsize=8)
    return save_figure(fig, plt, path)


def save_figure(fig, plt, path: str) -> str:
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with atomic_write(path, "wb") as f:  # a kill mid-write leaves the previous picture, not a torn one
        fig.savefig(f, format=os.path.splitext(path)[1][1:] or "png", dpi=110)
    plt.close(fig)
    return path
