"""Plots of runs (matplotlib, written as PNG): training curves from metrics.jsonl."""

from __future__ import annotations

import math
import os

from .train.metrics_log import read_metrics


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(runs: dict[str, str], keys: list[str], path: str, log_y: tuple[str, ...] = ()) -> str:
    """One panel per metric key, one line per run (label -> run folder); returns ``path``."""
    plt = _pyplot()
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
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
