"""Sample pictures of a run: image grids, or scatter plots for toy data."""

from __future__ import annotations

import math
import os

import torch

from ..atomic import atomic_write


def save_sample_grid(samples: torch.Tensor, path: str) -> None:
    """Images in [-1, 1] as one PNG grid; [N, 2] or [N, 3] toy points as a scatter plot."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    samples = samples.detach().float().cpu()
    if samples.dim() == 4:
        from torchvision.utils import save_image

        with atomic_write(path, "wb") as f:  # a kill mid-write leaves the previous picture, not a torn one
            save_image(samples, f, format="png", nrow=int(math.ceil(math.sqrt(len(samples)))), normalize=True,
                       value_range=(-1, 1))
    elif samples.dim() == 2 and samples.shape[1] in (2, 3):
        save_scatter(samples, path)
    else:
        raise ValueError(f"samples: expected images [N, C, H, W] or points [N, 2|3], got {tuple(samples.shape)}")


def save_scatter(points: torch.Tensor, path: str, reference: torch.Tensor | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(4, 4))
    three_d = points.shape[1] == 3
    ax = fig.add_subplot(projection="3d" if three_d else None)
    for data, color, label in ((reference, "0.7", "data"), (points, "C0", "generated")):
        if data is not None:
            ax.scatter(*data.T.numpy(), s=2, c=color, label=label)
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
