"""Batching rules of the fused ops for ``torch.func.vmap`` (and so for jacrev, jacfwd, hessian).

Registered with ``torch.library.register_vmap`` on ``torch.ops.fastreg.*``, so a vmapped call of
the public wrappers, of their eager autograd Functions (``generate_vmap_rule``) or of the ops
themselves lands here instead of PyTorch's slow per-slice fallback.

- ``grad_penalty`` and ``_grad_penalty_backward``: one kernel call per vmapped slice (the penalty
  of slice ``k`` is the mean over that slice's own rows, with its own ``num_real``), stacked, so
  every slice gets exactly what an unbatched call on it returns.
- ``gaussian_noise`` and ``random_interpolate``: one kernel call on the slices stacked along the
  batch dimension, so each slice draws its own numbers; this is vmap's ``randomness="different"``.
  Under ``"error"`` (vmap's default) and ``"same"`` they raise a RuntimeError naming the op (one
  call cannot give every slice the same numbers without a second, different draw).
"""

from __future__ import annotations

import torch


def _slice(t: torch.Tensor | None, dim: int | None, k: int) -> torch.Tensor | None:
    return t if t is None or dim is None else t.select(dim, k)


def _grad_penalty_vmap(info, in_dims, grad, logits, weight="one", num_real=0, norm="sq", target=1.0):
    values, norms = [], []
    for k in range(info.batch_size):
        value, row_norms = torch.ops.fastreg.grad_penalty(
            _slice(grad, in_dims[0], k), _slice(logits, in_dims[1], k), weight, num_real, norm, target)
        values.append(value)
        norms.append(row_norms)
    return (torch.stack(values), torch.stack(norms)), (0, 0)


def _grad_penalty_backward_vmap(info, in_dims, grad_value, grad, logits, row_norms, weight, num_real, norm, target):
    d_grads, d_logits = [], []
    for k in range(info.batch_size):
        d_grad, d_logit = torch.ops.fastreg._grad_penalty_backward(
            _slice(grad_value, in_dims[0], k), _slice(grad, in_dims[1], k), _slice(logits, in_dims[2], k),
            _slice(row_norms, in_dims[3], k), weight, num_real, norm, target)
        d_grads.append(d_grad)
        d_logits.append(d_logit)
    return (torch.stack(d_grads), torch.stack(d_logits)), (0, 0)


def _require_different_randomness(info, op: str) -> None:
    if info.randomness != "different":
        raise RuntimeError(
            f"fastreg.{op} under torch.func.vmap needs randomness='different' (every vmapped slice draws its "
            f"own numbers in one kernel call); randomness={info.randomness!r} is not supported")


def _stacked(t: torch.Tensor, dim: int | None, batch_size: int) -> torch.Tensor:
    """t with its vmapped dimension first (expanded to batch_size when t is not vmapped)."""
    return t.movedim(dim, 0) if dim is not None else t.expand(batch_size, *t.shape)


def _gaussian_noise_vmap(info, in_dims, x, sigma_rows, sigma, generator=None):
    _require_different_randomness(info, "gaussian_noise")
    xs = _stacked(x, in_dims[0], info.batch_size)
    if sigma_rows is None:  # one scale for every element: the stacked tensor is one call
        return torch.ops.fastreg.gaussian_noise(xs, None, sigma, generator), 0
    # Per-row scales: slices [B, ...] stacked into K*B rows, each with its own scale.
    rows = xs.shape[1]
    flat_x = xs.reshape(info.batch_size * rows, *xs.shape[2:])
    flat_sigma = _stacked(sigma_rows, in_dims[1], info.batch_size).reshape(-1)
    out = torch.ops.fastreg.gaussian_noise(flat_x, flat_sigma, sigma, generator)
    return out.reshape(xs.shape), 0


def _random_interpolate_vmap(info, in_dims, x_real, x_fake, generator=None):
    _require_different_randomness(info, "random_interpolate")
    real = _stacked(x_real, in_dims[0], info.batch_size)
    fake = _stacked(x_fake, in_dims[1], info.batch_size)
    rows = real.shape[1]
    flat_shape = (info.batch_size * rows, *real.shape[2:])
    out, eps = torch.ops.fastreg.random_interpolate(real.reshape(flat_shape), fake.reshape(flat_shape), generator)
    return (out.reshape(real.shape), eps.reshape(info.batch_size, rows)), (0, 0)


def register() -> None:
    """Register the batching rules (called once, by fastreg.ops, when the extension is loaded)."""
    torch.library.register_vmap("fastreg::grad_penalty", _grad_penalty_vmap)
    torch.library.register_vmap("fastreg::_grad_penalty_backward", _grad_penalty_backward_vmap)
    torch.library.register_vmap("fastreg::gaussian_noise", _gaussian_noise_vmap)
    torch.library.register_vmap("fastreg::random_interpolate", _random_interpolate_vmap)
