"""The experiments' figures (matplotlib, PNG): curves per panel, bars with seeds, sample grids,
confusion matrices. Histograms and vanishing-gradient curves reuse :mod:`fastreg.diagnostics.plots`."""

from __future__ import annotations

import math

import torch

from ..diagnostics.plots import pyplot, save_figure


def curve_panels(panels: dict[str, dict[str, list[tuple[float, float]]]], path: str, ylabel: str,
                 xlabel: str = "generator step", log_y: bool = False, columns: int = 5) -> str:
    """One panel per key of ``panels``, one line per label; non-finite points are left out and a run
    with none is marked 'diverged' in its legend."""
    plt = pyplot()
    n = max(1, len(panels))
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.8 * cols, 3.0 * rows), squeeze=False)
    for ax, (title, lines) in zip(axes.flat, panels.items()):
        for label, points in lines.items():
            good = [(x, y) for x, y in points if math.isfinite(y) and (y > 0 or not log_y)]
            if good:
                ax.plot(*zip(*good), marker="o", markersize=3, linewidth=1.2, label=label)
            else:
                ax.plot([], [], label=f"{label} (diverged)")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if log_y:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return save_figure(fig, plt, path)


def grouped_bars(groups: dict[str, dict[str, list[float]]], path: str, ylabel: str) -> str:
    """Bars of the mean over seeds per (group, label) with every seed's value as a dot; a non-finite
    value is drawn as a cross at the top of the axis."""
    plt = pyplot()
    labels = list(dict.fromkeys(label for g in groups.values() for label in g))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.4 * len(groups) * max(1, len(labels)) * 0.6), 3.2))
    width = 0.8 / max(1, len(labels))
    finite_values = [v for g in groups.values() for vs in g.values() for v in vs if math.isfinite(v)]
    top = max(finite_values) * 1.15 if finite_values else 1.0
    for j, label in enumerate(labels):
        for i, values in enumerate(groups.values()):
            vs = values.get(label, [])
            x = i + (j - (len(labels) - 1) / 2) * width
            ok = [v for v in vs if math.isfinite(v)]
            if ok:
                ax.bar(x, sum(ok) / len(ok), width * 0.9, color=f"C{j}", alpha=0.6, label=label if i == 0 else None)
                ax.plot([x] * len(ok), ok, "k.", markersize=4)
            if len(ok) < len(vs):
                ax.plot([x], [top], "rx")
    ax.set_xticks(range(len(groups)), list(groups), fontsize=8)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7)
    return save_figure(fig, plt, path)


def sample_panels(samples: dict[str, torch.Tensor], path: str, per_row: int = 8) -> str:
    """A grid of image samples (values in [-1, 1], clamped there) per label, side by side; toy samples as a
    scatter of their first two coordinates, unclamped (five of the 3-D mixture's seven modes lie beyond 1)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(samples), figsize=(2.6 * len(samples), 2.8), squeeze=False)
    for ax, (label, x) in zip(axes[0], samples.items()):
        x = torch.nan_to_num(x.float(), nan=0.0)
        if x.dim() == 2:
            ax.scatter(x[:, 0].numpy(), x[:, 1].numpy(), s=2, alpha=0.5)
        else:
            x = x.clamp(-1, 1)
            n = (len(x) // per_row) * per_row or len(x)
            x = x[:n]
            c, h, w = x.shape[1:]
            rows = max(1, n // per_row)
            grid = x.reshape(rows, -1, c, h, w).permute(0, 3, 1, 4, 2).reshape(rows * h, -1, c)
            grid = (grid + 1) / 2
            grid = grid.numpy()
            ax.imshow(grid[..., 0] if c == 1 else grid, cmap="gray" if c == 1 else None, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        ax.set_title(label, fontsize=9)
    return save_figure(fig, plt, path)


def confusion_panels(matrices: dict[str, list[list[float]]], row_labels: list[str], col_labels: list[str],
                     path: str) -> str:
    """Heat maps of fractions (rows: sample source, columns: D's call)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(matrices), figsize=(3.8 * len(matrices), 3.0), squeeze=False)
    for ax, (title, m) in zip(axes[0], matrices.items()):
        ax.imshow(m, vmin=0, vmax=1, cmap="Blues")
        for i, row in enumerate(m):
            for j, value in enumerate(row):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="k" if value < 0.6 else "w")
        ax.set_xticks(range(len(col_labels)), col_labels, fontsize=8)
        ax.set_yticks(range(len(row_labels)), row_labels, fontsize=8)
        ax.set_title(title, fontsize=9)
    return save_figure(fig, plt, path)


def heatmap_panels(panels: dict[str, list[list[float]]], notes: dict[str, list[list[str]]], row_labels: list[str],
                   col_labels: list[str], path: str, label: str = "median final FID") -> str:
    """One heat map per key of ``panels`` on a shared log colour scale, each cell annotated with ``notes``; a
    non-finite value is drawn black."""
    import numpy as np
    from matplotlib.colors import LogNorm

    plt = pyplot()
    finite_values = [v for m in panels.values() for row in m for v in row if math.isfinite(v) and v > 0]
    low, high = (min(finite_values), max(finite_values)) if finite_values else (1.0, 10.0)
    norm = LogNorm(vmin=low, vmax=max(high, low * 1.01))
    fig, axes = plt.subplots(1, len(panels), figsize=(1.3 * len(col_labels) * len(panels) + 2.5,
                                                       0.55 * len(row_labels) + 1.6), squeeze=False)
    image = None
    for ax, (title, matrix) in zip(axes[0], panels.items()):
        values = np.array(matrix, dtype=float)
        ax.set_facecolor("black")
        image = ax.imshow(np.ma.masked_invalid(np.where(values > 0, values, np.nan)), norm=norm, cmap="viridis",
                          aspect="auto")
        for i, row in enumerate(notes[title]):
            for j, text in enumerate(row):
                bright = math.isfinite(values[i, j]) and norm(values[i, j]) > 0.6
                ax.text(j, i, text, ha="center", va="center", fontsize=7, color="k" if bright else "w")
        ax.set_xticks(range(len(col_labels)), col_labels, fontsize=8)
        ax.set_yticks(range(len(row_labels)), row_labels, fontsize=8)
        ax.set_title(title, fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=axes[0, -1], label=label, shrink=0.8)
    return save_figure(fig, plt, path)


def mode_histograms(histograms: dict[str, dict[int, list[int]]], path: str, expected: float | None = None) -> str:
    """One panel per method: each seed's mode histogram (samples per mode) sorted from the most to the least
    generated mode, on a log scale (an empty mode drawn at the bottom), with the uniform count as a dashed line."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(histograms), figsize=(2.8 * len(histograms), 2.8), squeeze=False, sharey=True)
    for ax, (label, per_seed) in zip(axes[0], histograms.items()):
        for i, (seed, counts) in enumerate(per_seed.items()):
            ranked = sorted(counts, reverse=True)
            ax.plot(range(1, len(ranked) + 1), [max(c, 0.5) for c in ranked], lw=1, color=f"C{i}",
                    label=f"seed {seed}: {sum(c > 0 for c in ranked)} modes")
        if expected is not None:
            ax.axhline(expected, color="k", ls="--", lw=0.8)
        ax.set_yscale("log")
        ax.set_xlabel("mode rank")
        ax.set_title(label, fontsize=8)
        ax.legend(fontsize=6)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("samples per mode")
    return save_figure(fig, plt, path)
