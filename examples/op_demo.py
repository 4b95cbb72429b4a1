"""fastreg's fused Roth regularizer at work on a small discriminator.

Trains nothing: takes a batch of real digits (scikit-learn's bundled 8x8
digits, upsampled to 32x32) and a batch of "fake" images, computes Roth et
al.'s symmetric JS regularizer

    Omega_JS = E_P[(1 - sigma(v))^2 ||grad_x v||^2] + E_Q[sigma(v)^2 ||grad_x v||^2]

with the native kernels and with the PyTorch reference, checks that value and
parameter gradients agree, and times one regularized D step of each.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import fastreg
from fastreg import ops, reference

BATCH = 64


def real_digits(n: int) -> torch.Tensor:
    from sklearn.datasets import load_digits

    images = torch.tensor(load_digits().images[:n], dtype=torch.float32) / 16.0  # [n, 8, 8] in [0, 1]
    images = F.interpolate(images[:, None], size=32, mode="bilinear", align_corners=False)
    return (images * 2 - 1).expand(-1, 3, -1, -1).contiguous()  # [-1, 1], three channels


def small_discriminator() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 32, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(32, 64, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(64, 128, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Linear(128 * 4 * 4, 1),
    )


def regularized_d_step(D: nn.Module, x_real: torch.Tensor, x_fake: torch.Tensor, penalty_fn) -> torch.Tensor:
    """NS-GAN D loss + (gamma/2) Omega_JS with one D forward; returns Omega (gradients left in D)."""
    x = torch.cat([x_real, x_fake]).requires_grad_()
    v = D(x).flatten()
    (g,) = torch.autograd.grad(v.sum(), x, create_graph=True)
    omega = 2 * penalty_fn(g, v, weight="roth_js", num_real=len(x_real))  # E_P[...] + E_Q[...]
    v_real, v_fake = v[: len(x_real)], v[len(x_real):]
    loss = F.softplus(-v_real).mean() + F.softplus(v_fake).mean() + 0.5 * 2.0 * omega
    D.zero_grad(set_to_none=True)
    loss.backward()
    return omega.detach()


def median_ms(fn, repeats: int = 30) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    torch.manual_seed(0)
    info = fastreg.backend_info()
    print(f"fastreg backend: {info}")
    D = small_discriminator()
    x_real = real_digits(BATCH)
    x_fake = torch.tanh(torch.randn(BATCH, 3, 32, 32))

    results = {}
    for name, fn in (("native", ops.grad_penalty), ("reference", reference.grad_penalty)):
        omega = regularized_d_step(D, x_real, x_fake, fn)
        grads = [p.grad.clone() for p in D.parameters()]
        ms = median_ms(lambda fn=fn: regularized_d_step(D, x_real, x_fake, fn))
        results[name] = (omega, grads, ms)
        print(f"{name:>9}: Omega_JS = {omega.item():.6f}   regularized D step {ms:.2f} ms (median of 30)")

    (o_n, g_n, ms_n), (o_r, g_r, ms_r) = results["native"], results["reference"]
    value_err = abs(o_n.item() - o_r.item()) / max(abs(o_r.item()), 1e-12)
    grad_err = max(((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item() for a, b in zip(g_n, g_r))
    print(f"agreement: value rel. diff {value_err:.2e}, parameter-gradient rel. diff {grad_err:.2e}")
    print(f"speed: native step is {ms_r / ms_n:.2f}x the reference step "
          "(whole D step incl. conv double backward; the op alone: make bench)")
    if value_err > 1e-4 or grad_err > 1e-3:
        raise SystemExit("native and reference disagree")


if __name__ == "__main__":
    main()
