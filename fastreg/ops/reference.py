"""Pure-PyTorch reference implementations of fastreg's ops.

Written from the formulas (docs/design.md section 8), independently of the C++ and
CUDA kernels, so that tests can catch kernel mistakes. Autograd differentiates
them, to any order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..divergences import get_divergence
from ._checks import parse_weight


def row_weights(logits: torch.Tensor | None, weight: str, num_real: int, rows: int,
                like: torch.Tensor) -> torch.Tensor:
    """w_i of the penalty for each of the ``rows`` rows.

    ``"one"``: 1. ``"roth_js"`` (Roth et al. 2017, symmetric JS form): rows
    ``i < num_real`` (real) get ``(1 - sigma(v_i))^2 = sigma(-v_i)^2``, the rest
    (fake) ``sigma(v_i)^2``. ``"f:<div>"``: ``w_f(v_i)`` of docs/design.md section 4.
    """
    kind, div = parse_weight(weight)
    if kind == "one":
        return torch.ones(rows, dtype=like.dtype, device=like.device)
    if kind == "roth_js":
        is_real = torch.arange(rows, device=logits.device) < num_real
        # sigma(-+v)^2 as exp(-2 softplus(+-v)): the same values, and autograd's first and second
        # derivatives keep the saturated tail (sigma (1 - sigma) would cancel to 0 for large |v|).
        return torch.where(is_real, torch.exp(-2 * F.softplus(logits)), torch.exp(-2 * F.softplus(-logits)))
    return get_divergence(div).weight(logits)


def grad_penalty(grad: torch.Tensor, logits: torch.Tensor | None = None, *, weight: str = "one",
                 num_real: int = 0, norm: str = "sq", target: float = 1.0) -> torch.Tensor:
    """(1/B) sum_i w_i h(||g_i||) in plain PyTorch.

    h(n) = n^2 (``"sq"``), (n - target)^2 (``"gp"``, Gulrajani et al. 2017) or
    max(0, n - target)^2 (``"gp_one_sided"``), with n = sqrt(sum of squares). At n = 0 every
    derivative through n is 0 (the subgradient convention of docs/design.md section 8, to all orders).
    """
    compute_dtype = torch.float32 if grad.dtype in (torch.float16, torch.bfloat16) else grad.dtype
    g = grad.reshape(grad.shape[0], -1).to(compute_dtype)
    v = None if logits is None else logits.to(compute_dtype)
    if norm == "sq":
        h = (g * g).sum(dim=1)
    else:
        excess = _norm_with_zero_subgradient((g * g).sum(dim=1)) - target
        if norm == "gp_one_sided":
            excess = F.relu(excess)
        h = excess * excess
    w = row_weights(v, weight, num_real, g.shape[0], g)
    return (w * h).mean().to(grad.dtype)


def _norm_with_zero_subgradient(sum_sq: torch.Tensor) -> torch.Tensor:
    """sqrt(sum_sq), differentiable to any order with all derivatives 0 where sum_sq = 0.

    (torch.linalg.vector_norm picks 0 for the first derivative at 0 but its second is NaN; the
    double ``where`` keeps the undefined branch out of every order.)
    """
    nonzero = sum_sq != 0  # NaN passes through
    root = torch.sqrt(torch.where(nonzero, sum_sq, torch.ones_like(sum_sq)))
    return torch.where(nonzero, root, torch.zeros_like(sum_sq))


def _per_row(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A [B] tensor shaped [B, 1, ..., 1] to broadcast over the rows of ``like``."""
    return values.reshape((like.shape[0],) + (1,) * (like.dim() - 1))


def gaussian_noise(x: torch.Tensor, sigma, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Instance noise :math:`x + \sigma\,\xi`, :math:`\xi \sim N(0, I)`, as ``x + sigma * randn_like(x)``.

    Arjovsky & Bottou 2017, "Towards Principled Methods for Training GANs":
    adding Gaussian noise to everything D sees convolves the real and generated
    distributions with the same Gaussian, so their supports overlap.

    ``sigma``: a number, or a ``[B]`` tensor giving row i the scale ``sigma[i]``
    (a negative or NaN entry gives a NaN row, as in the CUDA kernel).
    """
    noise = torch.randn_like(x, generator=generator)
    if isinstance(sigma, torch.Tensor):
        valid = torch.isfinite(sigma) & (sigma >= 0)
        sigma = torch.where(valid, sigma, torch.full_like(sigma, float("nan")))
        return x + _per_row(sigma.to(x.dtype), x) * noise
    return x + sigma * noise


def random_interpolate(x_real: torch.Tensor, x_fake: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Random interpolates :math:`\epsilon_i x_{r,i} + (1 - \epsilon_i) x_{f,i}`, one :math:`\epsilon_i \sim U[0, 1]`
    per sample.

    Gulrajani et al. 2017, "Improved Training of Wasserstein GANs" (WGAN-GP
    evaluates its gradient penalty at these points). ``eps`` is drawn with
    ``torch.rand`` in float32 (float64 for float64 inputs).
    """
    compute_dtype = torch.float64 if x_real.dtype == torch.float64 else torch.float32
    eps = torch.rand(x_real.shape[0], generator=generator, dtype=compute_dtype, device=x_real.device)
    eps = _per_row(eps, x_real)
    return (eps * x_real + (1 - eps) * x_fake).to(x_real.dtype)
