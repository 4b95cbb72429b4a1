"""Argument checks of the fused ops, the Python twin of ``csrc/common/grad_penalty_args.h`` and
``csrc/common/random_ops_args.h`` (same function names).

Shared by the native and reference paths and the fake kernels, so both backends reject the same bad
input with a ValueError naming the argument before any kernel runs; the C++ kernels repeat these checks
for direct ``torch.ops.fastreg.*`` calls.
"""

from __future__ import annotations

import math

import torch

from ..divergences import DIVERGENCES

NORMS = ("sq", "gp", "gp_one_sided")


def parse_weight(weight: str) -> tuple[str, str | None]:
    """Split ``weight`` into (kind, divergence): ("one", None), ("roth_js", None) or ("f", div)."""
    if weight in ("one", "roth_js"):
        return weight, None
    if isinstance(weight, str) and weight.startswith("f:") and weight[2:] in DIVERGENCES:
        return "f", weight[2:]
    raise ValueError(f"grad_penalty: unknown weight {weight!r}; expected 'one', 'roth_js' or 'f:<div>' "
                     f"with div in {', '.join(DIVERGENCES)}")


def check_grad_penalty_args(grad: torch.Tensor, logits: torch.Tensor | None, weight: str, num_real: int,
                            norm: str, target: float) -> None:
    """Raise ValueError (naming the argument) unless the inputs satisfy the op contract (C++:
    ``check_grad_penalty_args``)."""
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
    if not isinstance(target, (int, float)) or isinstance(target, bool) or not math.isfinite(target) or target < 0:
        raise ValueError(f"grad_penalty: target must be a finite float >= 0 (a gradient norm), got {target!r}")
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


def accumulate_type(dtype: torch.dtype) -> torch.dtype:
    """The dtype the ops accumulate in (grad_penalty's row_norms, random_interpolate's eps): float64 for
    float64, else float32 (C++: ``accumulate_type``)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_grad_penalty_backward_args(grad_value: torch.Tensor, grad: torch.Tensor, logits: torch.Tensor | None,
                                     row_norms: torch.Tensor, weight: str, num_real: int, norm: str,
                                     target: float) -> None:
    """Raise ValueError (naming the argument) unless grad_penalty_backward's inputs fit together.

    Besides the forward's checks: grad_value is a one-element tensor and row_norms is ``[B]`` in the
    accumulation dtype, both on grad's device (the C++ twin is ``check_grad_penalty_backward_args``).
    """
    check_grad_penalty_args(grad, logits, weight, num_real, norm, target)
    rows = grad.shape[0]
    if not isinstance(grad_value, torch.Tensor) or grad_value.numel() != 1:
        shape = tuple(grad_value.shape) if isinstance(grad_value, torch.Tensor) else type(grad_value).__name__
        raise ValueError(f"grad_penalty_backward: grad_value must be a scalar, got shape {shape}")
    if grad_value.device != grad.device:
        raise ValueError(f"grad_penalty_backward: grad_value is on {grad_value.device} but grad is on {grad.device}")
    acc = accumulate_type(grad.dtype)
    if (not isinstance(row_norms, torch.Tensor) or row_norms.dim() != 1 or row_norms.shape[0] != rows
            or row_norms.dtype != acc):
        got = (f"{tuple(row_norms.shape)} {row_norms.dtype}" if isinstance(row_norms, torch.Tensor)
               else type(row_norms).__name__)
        raise ValueError(f"grad_penalty_backward: row_norms must be [B] = [{rows}] in the accumulation dtype {acc}, "
                         f"got {got}")
    if row_norms.device != grad.device:
        raise ValueError(f"grad_penalty_backward: row_norms is on {row_norms.device} but grad is on {grad.device}")


# --- gaussian_noise, random_interpolate ---------------------------------------------------------

SUPPORTED_DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)


def check_noise_input(x: torch.Tensor) -> None:
    """x must be a tensor of a supported floating dtype."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"gaussian_noise: x must be a tensor, got {type(x).__name__}")
    if x.dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"gaussian_noise: x must be float64, float32, float16 or bfloat16, got {x.dtype}")


def check_scalar_sigma(sigma: float) -> float:
    """A Python number sigma as a float; it must be finite and non-negative."""
    value = float(sigma)
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"gaussian_noise: sigma must be finite and non-negative, got {sigma!r}")
    return value


def noise_scale_args(x: torch.Tensor, sigma) -> tuple[torch.Tensor | None, float]:
    """Split ``sigma`` into the op's (sigma_rows, sigma) arguments.

    A Python number gives ``(None, sigma)``. A ``[B]`` tensor gives
    ``(sigma, 1.0)`` (row i of x gets noise scale ``sigma[i]``). A 0-d tensor
    on x's device is broadcast to ``[B]``; a 0-d CPU tensor is read as a number
    (no device sync).
    """
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float, torch.Tensor)):
        raise ValueError(f"gaussian_noise: sigma must be a float or a [B] tensor, got {type(sigma).__name__}")
    if not isinstance(sigma, torch.Tensor):
        return None, check_scalar_sigma(sigma)
    if sigma.requires_grad and torch.is_grad_enabled():
        raise ValueError("gaussian_noise: sigma requires grad, but the gradient w.r.t. sigma is not provided; "
                         "pass sigma.detach()")
    if not sigma.is_floating_point():
        raise ValueError(f"gaussian_noise: sigma must be floating point, got {sigma.dtype}")
    if sigma.dim() == 0 and sigma.device.type == "cpu" and x.device.type != "cpu":
        return None, check_scalar_sigma(sigma.item())
    if sigma.dim() == 0 and x.dim() > 0:
        sigma = sigma.expand(x.shape[0])
    check_sigma_rows(x, sigma)
    return sigma, 1.0


def check_sigma_rows(x: torch.Tensor, sigma_rows: torch.Tensor) -> None:
    """A per-sample sigma: floating point, shape [B] for x of shape [B, ...], on x's device."""
    if not sigma_rows.is_floating_point():
        raise ValueError(f"gaussian_noise: sigma must be floating point, got {sigma_rows.dtype}")
    if x.dim() == 0:
        raise ValueError("gaussian_noise: a tensor sigma needs x with a batch dimension [B, ...], got a 0-d x")
    rows = x.shape[0]
    if sigma_rows.dim() != 1 or sigma_rows.shape[0] != rows:
        raise ValueError(f"gaussian_noise: sigma must have shape [B] = [{rows}] (one value per sample of x), "
                         f"got {tuple(sigma_rows.shape)}")
    if sigma_rows.device != x.device:
        raise ValueError(f"gaussian_noise: sigma is on {sigma_rows.device} but x is on {x.device}")


def check_gaussian_noise_args(x: torch.Tensor, sigma_rows: torch.Tensor | None, sigma: float) -> None:
    """The op's (x, sigma_rows, sigma) arguments (C++: ``check_gaussian_noise_args``); the values of a tensor
    sigma are read by :func:`check_sigma_values` only (on the CPU)."""
    check_noise_input(x)
    check_scalar_sigma(sigma)
    if sigma_rows is not None:
        check_sigma_rows(x, sigma_rows)


def check_sigma_values(sigma_rows: torch.Tensor) -> None:
    """Every per-sample sigma must be finite and non-negative (reads the values: CPU only)."""
    bad = ~(torch.isfinite(sigma_rows) & (sigma_rows >= 0))
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(f"gaussian_noise: sigma must be finite and non-negative, got sigma[{i}] = "
                         f"{sigma_rows[i].item()}")


def check_random_interpolate_args(x_real: torch.Tensor, x_fake: torch.Tensor) -> None:
    """x_real and x_fake: tensors of one shape [B, ...] (B > 0), device and supported dtype (C++:
    ``check_random_interpolate_args``)."""
    for name, t in (("x_real", x_real), ("x_fake", x_fake)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"random_interpolate: {name} must be a tensor, got {type(t).__name__}")
    if x_real.dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"random_interpolate: x_real must be float64, float32, float16 or bfloat16, "
                         f"got {x_real.dtype}")
    if x_real.dim() == 0:
        raise ValueError("random_interpolate: x_real must have a batch dimension [B, ...], got a 0-d tensor")
    if x_real.shape[0] == 0:
        raise ValueError("random_interpolate: x_real has an empty batch (B = 0)")
    if x_fake.shape != x_real.shape:
        raise ValueError(f"random_interpolate: x_fake has shape {tuple(x_fake.shape)} but x_real has shape "
                         f"{tuple(x_real.shape)}")
    if x_fake.device != x_real.device:
        raise ValueError(f"random_interpolate: x_fake is on {x_fake.device} but x_real is on {x_real.device}")
    if x_fake.dtype != x_real.dtype:
        raise ValueError(f"random_interpolate: x_fake has dtype {x_fake.dtype} but x_real has dtype {x_real.dtype}")


def check_generator(op: str, generator: torch.Generator | None, device: torch.device) -> None:
    """generator, when given, must be a torch.Generator for the tensors' device type."""
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"{op}: generator must be a torch.Generator or None, got {type(generator).__name__}")
    if generator.device.type != device.type:
        raise ValueError(f"{op}: generator is for {generator.device.type} but the input is on {device}")
