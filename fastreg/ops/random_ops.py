"""gaussian_noise and random_interpolate: the public wrappers, their fake kernels and their autograd
(csrc/cpu/random_ops.cpp and csrc/cuda/random_ops.cu are the kernels; schemas in csrc/fastreg.cpp).

Eager calls go through :class:`EagerGaussianNoise` and :class:`EagerRandomInterpolate` when something is
differentiated (the kernels below the Autograd dispatch key, as :class:`fastreg.ops.grad_penalty.EagerGradPenalty`),
else straight to the kernels; torch.compile and direct ``torch.ops.fastreg.*`` calls use the autograd
registered in :func:`register`. Their program order under torch.compile: :mod:`fastreg.ops.order`.
"""

from __future__ import annotations

import torch

from . import order, reference
from ._checks import (accumulate_type, check_gaussian_noise_args, check_generator, check_noise_input,
                      check_random_interpolate_args, check_sigma_values, noise_scale_args)
from .backend import use_native
from .eager_function import signature_bound_once

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
    if differentiated(x):
        return EagerGaussianNoise.apply(x, sigma_rows, scale, generator)
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
    check_random_interpolate_args(x_real, x_fake)
    check_generator("random_interpolate", generator, x_real.device)
    if not use_native(x_real.device):
        return reference.random_interpolate(x_real, x_fake, generator)
    if torch.compiler.is_compiling():
        out, _ = torch.ops.fastreg.random_interpolate(x_real, x_fake, generator)
        return out
    if differentiated(x_real, x_fake):
        out, _ = EagerRandomInterpolate.apply(x_real, x_fake, generator)
        return out
    with torch._C._AutoDispatchBelowAutograd():
        out, _ = torch.ops.fastreg.random_interpolate(x_real, x_fake, generator)
    return out



# --- fake (meta) kernels ---------------------------------------------------------------------

def _gaussian_noise_fake(x, sigma_rows, sigma, generator=None):
    order.install_inductor_lowerings_if_loaded()  # traced for torch.compile: keep program order
    check_gaussian_noise_args(x, sigma_rows, sigma)
    return x.new_empty(x.shape)


def _random_interpolate_fake(x_real, x_fake, generator=None):
    order.install_inductor_lowerings_if_loaded()
    check_random_interpolate_args(x_real, x_fake)
    return x_real.new_empty(x_real.shape), x_real.new_empty((x_real.shape[0],), dtype=accumulate_type(x_real.dtype))


# --- autograd --------------------------------------------------------------------------------

def differentiated(*tensors: torch.Tensor) -> bool:
    """Whether a call must go through the eager autograd Function: reverse mode is recording one of
    ``tensors``, or a torch.func transform or a forward-mode AD level is active (a tensor of theirs
    need not report requires_grad, and the raw op would drop its tangent)."""
    return ((torch.is_grad_enabled() and any(t.requires_grad for t in tensors))
            or torch._C._are_functorch_transforms_active() or torch.autograd.forward_ad._current_level >= 0)


@signature_bound_once
class EagerGaussianNoise(torch.autograd.Function):
    """Eager autograd for gaussian_noise with the least Python on the path (see EagerGradPenalty).

    torch.func: the jvp is the identity on x's tangent; under vmap each slice draws its own noise
    (fastreg.ops.vmap: randomness="different" only).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x, sigma_rows, sigma, generator):
        with torch._C._AutoDispatchBelowAutograd():
            return torch.ops.fastreg.gaussian_noise(x, sigma_rows, sigma, generator)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad_out):
        return grad_out, None, None, None

    @staticmethod
    def jvp(ctx, x_dot, *_):
        return x_dot.clone(memory_format=torch.contiguous_format)


@signature_bound_once
class EagerRandomInterpolate(torch.autograd.Function):
    """Eager autograd for random_interpolate; saves eps for the backward and the jvp (see EagerGradPenalty)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x_real, x_fake, generator):
        with torch._C._AutoDispatchBelowAutograd():
            return torch.ops.fastreg.random_interpolate(x_real, x_fake, generator)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _setup_random_interpolate(ctx, inputs, output)
        ctx.save_for_forward(output[1])

    @staticmethod
    def backward(ctx, grad_out, _grad_eps):
        return _random_interpolate_vjp(ctx, grad_out, _grad_eps)

    @staticmethod
    def jvp(ctx, real_dot, fake_dot, _generator_dot):
        r"""d\hat x_i = eps_i dx_{r,i} + (1 - eps_i) dx_{f,i} (a tangent that is None counts as 0)."""
        (eps,) = ctx.saved_tensors
        terms = []
        if real_dot is not None:
            terms.append(_interpolate_grads(real_dot, eps, (True, False))[0])
        if fake_dot is not None:
            terms.append(_interpolate_grads(fake_dot, eps, (False, True))[1])
        out_dot = terms[0] if len(terms) == 1 else terms[0] + terms[1]
        return out_dot.contiguous(), None


def _interpolate_grads(grad_out: torch.Tensor, eps: torch.Tensor, needs: tuple[bool, bool]):
    """(eps_i g_i, (1 - eps_i) g_i) in g's dtype, each only where needed; differentiable w.r.t. g."""
    eps_rows = eps.reshape((grad_out.shape[0],) + (1,) * (grad_out.dim() - 1))
    d_real = (grad_out * eps_rows).to(grad_out.dtype) if needs[0] else None
    d_fake = (grad_out * (1 - eps_rows)).to(grad_out.dtype) if needs[1] else None
    return d_real, d_fake


def _gaussian_noise_vjp(ctx, grad_out):
    if ctx.needs_input_grad[1]:
        raise ValueError("gaussian_noise: the gradient w.r.t. sigma is not provided; pass sigma.detach()")
    return grad_out, None, None, None


def _setup_random_interpolate(ctx, inputs, output):
    _out, eps = output
    ctx.mark_non_differentiable(eps)
    ctx.save_for_backward(eps)


def _random_interpolate_vjp(ctx, grad_out, _grad_eps):
    # eps is marked non-differentiable, so its cotangent is never used.
    (eps,) = ctx.saved_tensors
    d_real, d_fake = _interpolate_grads(grad_out, eps, ctx.needs_input_grad[:2])
    return d_real, d_fake, None


def register() -> None:
    """Register the fake kernels and the autograd of gaussian_noise and random_interpolate (once, by fastreg.ops)."""
    torch.library.register_fake("fastreg::gaussian_noise", _gaussian_noise_fake)
    torch.library.register_fake("fastreg::random_interpolate", _random_interpolate_fake)
    torch.library.register_autograd("fastreg::gaussian_noise", _gaussian_noise_vjp)
    torch.library.register_autograd("fastreg::random_interpolate", _random_interpolate_vjp,
                                    setup_context=_setup_random_interpolate)
