"""Validation of grad_penalty arguments, shared by the native and reference paths.

Both backends reject the same bad input with the same ValueError, naming the
argument, before any kernel runs.
"""

from __future__ import annotations

import torch

from .divergences import DIVERGENCES

NORMS = ("sq", "gp", "gp_one_sided")


def parse_weight(weight: str) -> tuple[str, str | None]:
    """Split ``weight`` into (kind, divergence): ("one", None), ("roth_js", None) or ("f", div)."""
    if weight in ("one", "roth_js"):
        return weight, None
    if isinstance(weight, str) and weight.startswith("f:") and weight[2:] in DIVERGENCES:
        return "f", weight[2:]
    raise ValueError(f"grad_penalty: unknown weight {weight!r}; expected 'one', 'roth_js' or 'f:<div>' "
                     f"with div in {', '.join(DIVERGENCES)}")


def check_grad_penalty_inputs(grad: torch.Tensor, logits: torch.Tensor | None, weight: str, num_real: int,
                              norm: str, target: float) -> None:
    """Raise ValueError (naming the argument) unless the inputs satisfy the op contract."""
    if not isinstance(grad, torch.Tensor):
        raise ValueError(f"grad_penalty: grad must be a tensor, got {type(grad).__name__}")
    kind, _ = parse_weight(weight)
    if norm not in NORMS:
        raise ValueError(f"grad_penalty: unknown norm {norm!r}; expected one of {', '.join(NORMS)}")
    if grad.dim() < 1:
        raise ValueError("grad_penalty: grad must have a batch dimension [B, ...], got a 0-d tensor")
    rows = grad.shape[0]
    if rows == 0:
        raise ValueError("grad_penalty: grad has an empty batch (B = 0)")
    if not grad.is_floating_point():
        raise ValueError(f"grad_penalty: grad must be floating point, got {grad.dtype}")
    if isinstance(num_real, bool) or not isinstance(num_real, int) or not 0 <= num_real <= rows:
        raise ValueError(f"grad_penalty: num_real must be an int in [0, B] = [0, {rows}], got {num_real!r}")
    if not isinstance(target, (int, float)) or isinstance(target, bool):
        raise ValueError(f"grad_penalty: target must be a float, got {target!r}")
    if kind != "one" and logits is None:
        raise ValueError(f"grad_penalty: weight {weight!r} depends on the logits, but logits is None")
    if logits is not None:
        if not isinstance(logits, torch.Tensor) or logits.dim() != 1 or logits.shape[0] != rows:
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ValueError(f"grad_penalty: logits must have shape [B] = [{rows}], got {shape}")
        if logits.device != grad.device:
            raise ValueError(f"grad_penalty: logits is on {logits.device} but grad is on {grad.device}")
        if logits.dtype != grad.dtype:
            raise ValueError(f"grad_penalty: logits has dtype {logits.dtype} but grad has dtype {grad.dtype}")


def accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype grad_penalty accumulates (and returns row_norms) in: float64 for float64, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_grad_penalty_backward_inputs(grad_value: torch.Tensor, grad: torch.Tensor, logits: torch.Tensor | None,
                                       row_norms: torch.Tensor, weight: str, num_real: int, norm: str,
                                       target: float) -> None:
    """Raise ValueError (naming the argument) unless grad_penalty_backward's inputs fit together.

    Besides the forward's checks: grad_value is a one-element tensor and row_norms is ``[B]`` in the
    accumulation dtype, both on grad's device (the C++ twin is ``check_grad_penalty_backward_args``).
    """
    check_grad_penalty_inputs(grad, logits, weight, num_real, norm, target)
    rows = grad.shape[0]
    if not isinstance(grad_value, torch.Tensor) or grad_value.numel() != 1:
        shape = tuple(grad_value.shape) if isinstance(grad_value, torch.Tensor) else type(grad_value).__name__
        raise ValueError(f"grad_penalty_backward: grad_value must be a scalar, got shape {shape}")
    if grad_value.device != grad.device:
        raise ValueError(f"grad_penalty_backward: grad_value is on {grad_value.device} but grad is on {grad.device}")
    acc = accumulate_dtype(grad.dtype)
    if (not isinstance(row_norms, torch.Tensor) or row_norms.dim() != 1 or row_norms.shape[0] != rows
            or row_norms.dtype != acc):
        got = (f"{tuple(row_norms.shape)} {row_norms.dtype}" if isinstance(row_norms, torch.Tensor)
               else type(row_norms).__name__)
        raise ValueError(f"grad_penalty_backward: row_norms must be [B] = [{rows}] in the accumulation dtype {acc}, "
                         f"got {got}")
    if row_norms.device != grad.device:
        raise ValueError(f"grad_penalty_backward: row_norms is on {row_norms.device} but grad is on {grad.device}")
