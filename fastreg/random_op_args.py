"""Validation of the random ops' arguments (gaussian_noise, random_interpolate).

Shared by the native and reference paths (and the fake kernels), so both
backends reject the same bad input with a ValueError naming the argument before
any kernel runs. The C++ kernels repeat these checks for direct
``torch.ops.fastreg.*`` calls.
"""

from __future__ import annotations

import math

import torch

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


def check_sigma_values(sigma_rows: torch.Tensor) -> None:
    """Every per-sample sigma must be finite and non-negative (reads the values: CPU only)."""
    bad = ~(torch.isfinite(sigma_rows) & (sigma_rows >= 0))
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(f"gaussian_noise: sigma must be finite and non-negative, got sigma[{i}] = "
                         f"{sigma_rows[i].item()}")


def check_interpolate_inputs(x_real: torch.Tensor, x_fake: torch.Tensor) -> None:
    """x_real and x_fake: tensors of one shape [B, ...] (B > 0), device and supported dtype."""
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


def accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    """dtype of the per-sample eps of random_interpolate: float64 for float64, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32
