"""D along straight lines from generated to real samples (Grewal, Hjelm, Bengio 2018, fig. 3).

For pairs ``(x_r, x_f)`` and ``t`` in [-0.5, 1.5], ``x(t) = t x_r + (1 - t) x_f`` (t = 0 the fake,
t = 1 the real sample, outside [0, 1] the extrapolations); per t the mean logit ``v(x(t))`` and
the mean input-gradient norm ``||grad_x v(x(t))||`` over the pairs. An unregularized D that
separates the sets saturates: flat logits and vanishing gradients away from the data, which is
what Roth's penalty and the gradient penalties are meant to prevent.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .discriminator import placement

PAIRS = 64
T_RANGE, T_POINTS = (-0.5, 1.5), 41


def interpolation_profile(D: nn.Module, x_real: torch.Tensor, x_fake: torch.Tensor,
                          ts: torch.Tensor | None = None) -> dict:
    """``{"t", "mean_logit", "mean_grad_norm"}`` (lists) for the pairs of rows of ``x_real`` and ``x_fake``."""
    if x_real.shape != x_fake.shape:
        raise ValueError(f"x_fake: expected the shape of x_real {tuple(x_real.shape)}, got {tuple(x_fake.shape)}")
    ts = torch.linspace(*T_RANGE, T_POINTS, dtype=torch.float64) if ts is None else ts
    x_real, x_fake = (x.detach().to(**placement(D)) for x in (x_real, x_fake))
    mean_logit, mean_norm = [], []
    for t in ts.tolist():
        x = (t * x_real + (1 - t) * x_fake).requires_grad_()
        v = D(x).reshape(-1)
        (g,) = torch.autograd.grad(v.sum(), x)
        mean_logit.append(v.mean().item())
        mean_norm.append(torch.linalg.vector_norm(g.flatten(1), dim=1).mean().item())
    return {"t": ts.tolist(), "mean_logit": mean_logit, "mean_grad_norm": mean_norm}
