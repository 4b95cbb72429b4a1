"""Pure-PyTorch reference implementations of fastreg's ops.

Written from the formulas (DESIGN.md section 8), independently of the C++ and
CUDA kernels, so that tests can catch kernel mistakes. Autograd differentiates
them, to any order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .divergences import get_divergence
from .penalty_args import parse_weight


def row_weights(logits: torch.Tensor | None, weight: str, num_real: int, rows: int,
                like: torch.Tensor) -> torch.Tensor:
    """w_i of the penalty for each of the ``rows`` rows.

    ``"one"``: 1. ``"roth_js"`` (Roth et al. 2017, symmetric JS form): rows
    ``i < num_real`` (real) get ``(1 - sigma(v_i))^2 = sigma(-v_i)^2``, the rest
    (fake) ``sigma(v_i)^2``. ``"f:<div>"``: ``w_f(v_i)`` of DESIGN.md section 4.
    """
    kind, div = parse_weight(weight)
    if kind == "one":
        return torch.ones(rows, dtype=like.dtype, device=like.device)
    if kind == "roth_js":
        is_real = torch.arange(rows, device=logits.device) < num_real
        return torch.where(is_real, torch.sigmoid(-logits) ** 2, torch.sigmoid(logits) ** 2)
    return get_divergence(div).weight(logits)


def grad_penalty(grad: torch.Tensor, logits: torch.Tensor | None = None, *, weight: str = "one",
                 num_real: int = 0, norm: str = "sq", target: float = 1.0) -> torch.Tensor:
    """(1/B) sum_i w_i h(||g_i||) in plain PyTorch.

    h(n) = n^2 (``"sq"``), (n - target)^2 (``"gp"``, Gulrajani et al. 2017) or
    max(0, n - target)^2 (``"gp_one_sided"``).
    """
    compute_dtype = torch.float32 if grad.dtype in (torch.float16, torch.bfloat16) else grad.dtype
    g = grad.reshape(grad.shape[0], -1).to(compute_dtype)
    v = None if logits is None else logits.to(compute_dtype)
    if norm == "sq":
        h = (g * g).sum(dim=1)
    else:
        excess = torch.linalg.vector_norm(g, dim=1) - target
        if norm == "gp_one_sided":
            excess = F.relu(excess)
        h = excess * excess
    w = row_weights(v, weight, num_real, g.shape[0], g)
    return (w * h).mean().to(grad.dtype)
