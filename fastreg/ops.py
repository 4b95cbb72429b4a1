"""Public fused ops and their registrations (fake kernels, autograd).

The ops live in the PyTorch dispatcher as ``torch.ops.fastreg.*`` (schemas in
``csrc/fastreg.cpp``; CPU kernels in ``csrc/cpu/``, CUDA kernels in
``csrc/cuda/``). This module registers their fake (meta) kernels, autograd
formulas (fastreg.op_autograd), batching rules (fastreg.op_vmap) and effects
(fastreg.op_order), so they run in eager mode, under ``torch.compile``, under
torch.func transforms and inside ``autograd.grad(create_graph=True)`` graphs,
and exposes the public wrappers.
"""

from __future__ import annotations

import torch

from . import op_autograd, op_order, op_vmap, reference
from .backend import extension_loaded, use_native
from .penalty_args import check_grad_penalty_backward_inputs, check_grad_penalty_inputs
from .random_op_args import (accumulate_dtype, check_generator, check_interpolate_inputs, check_noise_input,
                             check_scalar_sigma, check_sigma_rows, check_sigma_values, noise_scale_args)

__all__ = ["gaussian_noise", "grad_penalty", "random_interpolate"]


def grad_penalty(grad: torch.Tensor, logits: torch.Tensor | None = None, *, weight: str = "one",
                 num_real: int = 0, norm: str = "sq", target: float = 1.0) -> torch.Tensor:
    r"""Fused weighted gradient-norm penalty, a scalar:

    .. math:: \frac{1}{B}\sum_i w_i\, h(\lVert g_i \rVert_2)

    Args:
        grad: ``[B, ...]``, row ``i`` is :math:`g_i = \nabla_x v(x_i)` (any
            trailing shape; non-contiguous is fine).
        logits: ``[B]``, the discriminator logits :math:`v_i`; needed when the
            weight depends on them.
        weight: ``"one"`` (:math:`w_i = 1`); ``"roth_js"`` (Roth et al. 2017,
            symmetric JS form: :math:`(1-\sigma(v_i))^2` for the first
            ``num_real`` rows, :math:`\sigma(v_i)^2` for the rest); or
            ``"f:<div>"`` (:math:`w_f(v_i) = f^{*\prime\prime}(g_f(v_i))\,g_f'(v_i)^2`
            of docs/design.md section 4, for div in kl, reverse_kl, pearson, neyman,
            squared_hellinger, js, gan).
        num_real: how many leading rows are real samples (``roth_js`` only).
        norm: ``"sq"`` (:math:`h(n) = n^2`), ``"gp"`` (:math:`(n - t)^2`,
            WGAN-GP) or ``"gp_one_sided"`` (:math:`\max(0, n - t)^2`).
        target: :math:`t` of the ``gp`` norms.

    Differentiable w.r.t. ``grad`` and ``logits``, twice (``gradgradcheck``
    passes). Accumulates in float32 (float64 for float64 inputs).

    Example (Roth et al.'s :math:`\Omega_{JS} = E_P[\dots] + E_Q[\dots]`, the sum of the real-batch
    and the fake-batch means, with D run on each batch separately as its batch norm needs)::

        x_real, x_fake = x_real.detach().requires_grad_(), x_fake.detach().requires_grad_()
        v_real, v_fake = D(x_real).flatten(), D(x_fake).flatten()
        g_real, g_fake = torch.autograd.grad(v_real.sum() + v_fake.sum(), (x_real, x_fake), create_graph=True)
        omega = (grad_penalty(g_real, v_real, weight="roth_js", num_real=len(x_real))
                 + grad_penalty(g_fake, v_fake, weight="roth_js", num_real=0))

    One call on concatenated rows, ``2 * grad_penalty(g, v, weight="roth_js", num_real=B)``, is the
    same only when both batches hold ``B`` rows (it averages over all ``2B``).
    """
    check_grad_penalty_inputs(grad, logits, weight, num_real, norm, target)
    if not use_native(grad.device):
        return reference.grad_penalty(grad, logits, weight=weight, num_real=num_real, norm=norm, target=target)
    if torch.compiler.is_compiling():
        value, _ = torch.ops.fastreg.grad_penalty(grad, logits, weight, num_real, norm, float(target))
        return value
    value, _ = op_autograd.EagerGradPenalty.apply(grad, logits, weight, num_real, norm, float(target))
    return value


def gaussian_noise(x: torch.Tensor, sigma, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Gaussian instance noise :math:`x + \sigma\,\xi`, :math:`\xi \sim N(0, I)`.

    Arjovsky & Bottou 2017, "Towards Principled Methods for Training GANs":
    when the real and generated distributions have disjoint supports, adding
    the same Gaussian noise to everything the discriminator sees (real *and*
    fake) convolves both with a Gaussian, so they overlap and D's gradients stay
    informative; :math:`\sigma` is annealed towards 0 during training.

    Args:
        x: any shape; float64, float32, float16 or bfloat16 (half types compute
            in float32). Non-contiguous is fine; the result is contiguous.
        sigma: a finite, non-negative number, or a ``[B]`` tensor (row ``i`` of
            ``x`` gets scale ``sigma[i]``; a 0-d tensor is broadcast). A tensor
            sigma is not differentiated; one that requires grad is rejected.
        generator: the torch.Generator to draw from (default: the device's
            default generator).

    The noise comes from a counter-based Philox4x32-10 generator evaluated in
    the kernel: element ``e`` of ``x`` (row-major) gets a normal computed from
    the call's key and ``e`` only, so the result is reproducible under
    ``torch.manual_seed`` (or a seeded ``generator``), does not depend on the
    number of CPU threads, and each call draws fresh numbers. On CUDA the key is
    the generator's graph-safe Philox (seed, offset), so CUDA-graph replays draw
    fresh numbers, the same ones as eager calls made in the same order.
    ``sigma = 0`` returns ``x`` exactly. The gradient w.r.t. ``x`` is the
    identity.

    Example (instance noise on both halves of a D step)::

        sigma = 0.1 * (1 - step / total_steps)
        v_real = D(gaussian_noise(x_real, sigma))
        v_fake = D(gaussian_noise(G(z), sigma))  # G's gradient flows through
    """
    check_noise_input(x)
    sigma_rows, scale = noise_scale_args(x, sigma)
    check_generator("gaussian_noise", generator, x.device)
    if not use_native(x.device):
        if sigma_rows is not None and x.device.type == "cpu" and not torch.compiler.is_compiling():
            check_sigma_values(sigma_rows)
        return reference.gaussian_noise(x, scale if sigma_rows is None else sigma_rows, generator)
    if torch.compiler.is_compiling():
        return torch.ops.fastreg.gaussian_noise(x, sigma_rows, scale, generator)
    if op_autograd.differentiated(x):
        return op_autograd.EagerGaussianNoise.apply(x, sigma_rows, scale, generator)
    with torch._C._AutoDispatchBelowAutograd():
        return torch.ops.fastreg.gaussian_noise(x, sigma_rows, scale, generator)


def random_interpolate(x_real: torch.Tensor, x_fake: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Random interpolates :math:`\hat x_i = \epsilon_i x_{r,i} + (1 - \epsilon_i) x_{f,i}`, one
    :math:`\epsilon_i \sim U[0, 1]` per sample.

    Gulrajani et al. 2017, "Improved Training of Wasserstein GANs": WGAN-GP
    penalizes :math:`(\lVert\nabla_x D(\hat x)\rVert_2 - 1)^2` at points
    sampled uniformly on the lines between pairs of real and generated
    samples.

    Args:
        x_real, x_fake: ``[B, ...]``, same shape, device and dtype (float64,
            float32, float16 or bfloat16); non-contiguous is fine.
        generator: the torch.Generator to draw from (default: the device's
            default generator).

    :math:`\epsilon_i` is drawn in the kernel from Philox4x32-10 (block ``i`` of
    the call's stream) in float32 (float64 for float64 inputs), with the same
    reproducibility, thread-independence and CUDA-graph rules as
    :func:`gaussian_noise`. Differentiable w.r.t. both inputs:
    :math:`\partial\hat x_i/\partial x_{r,i} = \epsilon_i`,
    :math:`\partial\hat x_i/\partial x_{f,i} = 1 - \epsilon_i` (the saved
    :math:`\epsilon` is reused; no random numbers are redrawn).

    Example (WGAN-GP penalty with the fused grad_penalty)::

        x_hat = random_interpolate(x_real, x_fake.detach()).requires_grad_()
        (g,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
        loss_d = D(x_fake.detach()).mean() - D(x_real).mean() + 10 * grad_penalty(g, norm="gp")
    """
    check_interpolate_inputs(x_real, x_fake)
    check_generator("random_interpolate", generator, x_real.device)
    if not use_native(x_real.device):
        return reference.random_interpolate(x_real, x_fake, generator)
    if torch.compiler.is_compiling():
        out, _ = torch.ops.fastreg.random_interpolate(x_real, x_fake, generator)
        return out
    if op_autograd.differentiated(x_real, x_fake):
        out, _ = op_autograd.EagerRandomInterpolate.apply(x_real, x_fake, generator)
        return out
    with torch._C._AutoDispatchBelowAutograd():
        out, _ = torch.ops.fastreg.random_interpolate(x_real, x_fake, generator)
    return out


# --- fake (meta) kernels -----------------------------------------------------------------------

def _accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _grad_penalty_fake(grad, logits, weight="one", num_real=0, norm="sq", target=1.0):
    check_grad_penalty_inputs(grad, logits, weight, num_real, norm, target)
    value = grad.new_empty(())
    row_norms = grad.new_empty((grad.shape[0],), dtype=_accumulate_dtype(grad.dtype))
    return value, row_norms


def _grad_penalty_backward_fake(grad_value, grad, logits, row_norms, weight, num_real, norm, target):
    # Also the Meta kernel: a meta tensor among CPU ones dispatches here, so the devices are checked too.
    check_grad_penalty_backward_inputs(grad_value, grad, logits, row_norms, weight, num_real, norm, target)
    grad_logits = torch.empty_like(logits) if logits is not None else grad.new_empty((0,))
    return torch.empty_like(grad, memory_format=torch.contiguous_format), grad_logits


def _gaussian_noise_fake(x, sigma_rows, sigma, generator=None):
    op_order.install_inductor_lowerings_if_loaded()  # traced for torch.compile: keep program order
    check_noise_input(x)
    check_scalar_sigma(sigma)
    if sigma_rows is not None:
        check_sigma_rows(x, sigma_rows)
    return x.new_empty(x.shape)


def _random_interpolate_fake(x_real, x_fake, generator=None):
    op_order.install_inductor_lowerings_if_loaded()
    check_interpolate_inputs(x_real, x_fake)
    return x_real.new_empty(x_real.shape), x_real.new_empty((x_real.shape[0],), dtype=accumulate_dtype(x_real.dtype))


def _register() -> None:
    torch.library.register_fake("fastreg::grad_penalty", _grad_penalty_fake)
    torch.library.register_fake("fastreg::grad_penalty_backward", _grad_penalty_backward_fake)
    torch.library.register_fake("fastreg::gaussian_noise", _gaussian_noise_fake)
    torch.library.register_fake("fastreg::random_interpolate", _random_interpolate_fake)
    op_autograd.register()
    op_vmap.register()
    op_order.register_effects()
    op_order.install_inductor_lowerings_if_loaded()


if extension_loaded():
    _register()
