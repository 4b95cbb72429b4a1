"""Plots of runs (matplotlib, written as PNG): training curves from metrics.jsonl, and the diagnostics' figures."""

from __future__ import annotations

import math
import os

from .train.metrics_log import read_metrics


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(runs: dict[str, str], keys: list[str], path: str, log_y: tuple[str, ...] = ()) -> str:
    """One panel per metric key, one line per run (label -> run folder); returns ``path``."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for label, run_dir in runs.items():
            records = [r for r in read_metrics(run_dir) if isinstance(r.get(key), (int, float))]
            points = [(r["step"], r[key]) for r in records if math.isfinite(r[key])]
            if points:
                ax.plot(*zip(*points), label=label, linewidth=1.2)
        ax.set_title(key)
        ax.set_xlabel("generator step")
        if key in log_y:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
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
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
