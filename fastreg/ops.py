"""Public fused ops and their registrations (fake kernels, autograd).

The ops live in the PyTorch dispatcher as ``torch.ops.fastreg.*`` (schemas in
``csrc/fastreg.cpp``; CPU kernels in ``csrc/cpu/``, CUDA kernels in
``csrc/cuda/``). This module registers their fake (meta) kernels and autograd
formulas, so they run in eager mode, under ``torch.compile`` and inside
``autograd.grad(create_graph=True)`` graphs, and exposes the public wrappers.
"""

from __future__ import annotations

import types

import torch

from . import op_order, op_vmap, reference
from .backend import extension_loaded, use_native
from .divergences import get_divergence
from .penalty_args import check_grad_penalty_backward_inputs, check_grad_penalty_inputs, parse_weight
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
            of DESIGN.md section 4, for div in kl, reverse_kl, pearson, neyman,
            squared_hellinger, js, gan).
        num_real: how many leading rows are real samples (``roth_js`` only).
        norm: ``"sq"`` (:math:`h(n) = n^2`), ``"gp"`` (:math:`(n - t)^2`,
            WGAN-GP) or ``"gp_one_sided"`` (:math:`\max(0, n - t)^2`).
        target: :math:`t` of the ``gp`` norms.

    Differentiable w.r.t. ``grad`` and ``logits``, twice (``gradgradcheck``
    passes). Accumulates in float32 (float64 for float64 inputs).

    Example (Roth et al.'s regularizer on a concatenated real+fake batch)::

        x = torch.cat([x_real, x_fake]).requires_grad_()
        v = D(x).flatten()
        (g,) = torch.autograd.grad(v.sum(), x, create_graph=True)
        omega = 2 * grad_penalty(g, v, weight="roth_js", num_real=len(x_real))
    """
    check_grad_penalty_inputs(grad, logits, weight, num_real, norm, target)
    if not use_native(grad.device):
        return reference.grad_penalty(grad, logits, weight=weight, num_real=num_real, norm=norm, target=target)
    if torch.compiler.is_compiling():
        value, _ = torch.ops.fastreg.grad_penalty(grad, logits, weight, num_real, norm, float(target))
        return value
    value, _ = _EagerGradPenalty.apply(grad, logits, weight, num_real, norm, float(target))
    return value


class _EagerGradPenalty(torch.autograd.Function):
    """Eager-mode autograd for grad_penalty with the least Python on the path.

    Same kernels and formulas as the registration below (which torch.compile
    and direct ``torch.ops.fastreg.grad_penalty`` calls use), but the kernels
    are called below the Autograd dispatch key, skipping the generic Python
    autograd wrapper that torch.library adds on every call (about 100 us per
    forward+backward on a CPU, as much as the kernels themselves at 128x3x32x32).
    When the backward itself is recorded (create_graph=True) it goes through
    the dispatcher, so the backward op's registered autograd gives the double
    backward.

    torch.func: ``setup_context`` (forward takes no ctx), a forward-mode ``jvp``
    and ``generate_vmap_rule`` (the ops' batching rules are in fastreg.op_vmap),
    so grad, vmap, jvp, jacrev, jacfwd and hessian work as on the reference.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(grad, logits, weight, num_real, norm, target):
        with torch._C._AutoDispatchBelowAutograd():
            return torch.ops.fastreg.grad_penalty(grad, logits, weight, num_real, norm, target)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _setup_grad_penalty(ctx, inputs, output)
        ctx.save_for_forward(inputs[0], inputs[1], output[1])

    @staticmethod
    def backward(ctx, grad_value, _grad_row_norms):
        # Recorded (create_graph=True, or under torch.func): the backward's own Function, for the double backward.
        recorded = torch.is_grad_enabled() or torch._C._are_functorch_transforms_active()
        return _penalty_input_grads(ctx, grad_value, _EagerGradPenaltyBackward.apply if recorded else None)

    @staticmethod
    def jvp(ctx, grad_dot, logits_dot, *_):
        r"""d value = \sum_i <dvalue/dg_i, dg_i> + dvalue/dv_i dv_i, from the backward op at grad_value = 1."""
        grad, logits, row_norms = ctx.saved_tensors
        one = torch.ones((), dtype=grad.dtype, device=grad.device)
        d_grad, d_logits = _EagerGradPenaltyBackward.apply(one, grad, logits, row_norms, *ctx.penalty_args)
        acc = row_norms.dtype
        value_dot = torch.zeros((), dtype=acc, device=grad.device)
        if grad_dot is not None:
            value_dot = value_dot + (d_grad.to(acc) * grad_dot.to(acc)).sum()
        if logits is not None and logits_dot is not None:
            value_dot = value_dot + (d_logits.to(acc) * logits_dot.to(acc)).sum()
        return value_dot.to(grad.dtype), None


class _EagerGradPenaltyBackward(torch.autograd.Function):
    """grad_penalty_backward as an eager autograd Function: the double backward of _EagerGradPenalty and
    its torch.func transforms (the torch.library autograd of the op, which torch.compile uses, does not
    support torch.func). Backward: _grad_penalty_backward_vjp; jvp below; vmap from fastreg.op_vmap.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(grad_value, grad, logits, row_norms, weight, num_real, norm, target):
        with torch._C._AutoDispatchBelowAutograd():
            return torch.ops.fastreg.grad_penalty_backward(grad_value, grad, logits, row_norms, weight, num_real,
                                                           norm, target)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _setup_grad_penalty_backward(ctx, inputs, output)
        ctx.save_for_forward(*inputs[:3])
        ctx.row_norms = inputs[3]

    @staticmethod
    def backward(ctx, grad_grad_cot, grad_logits_cot):
        return _grad_penalty_backward_vjp(ctx, grad_grad_cot, grad_logits_cot)

    @staticmethod
    def jvp(ctx, value_dot, grad_dot, logits_dot, *_):
        r"""The op is :math:`(\bar y, g, v) \mapsto \bar y\,\nabla f(g, v)`; its Jacobian in (g, v) is
        :math:`\bar y` times the symmetric Hessian of f, so the tangent is
        :math:`\dot{\bar y}\,\nabla f` plus the op's VJP taken at the cotangents (dg, dv)."""
        grad_value, grad, logits = ctx.saved_tensors
        as_vjp = types.SimpleNamespace(saved_tensors=(grad_value, grad, logits), penalty_args=ctx.penalty_args,
                                       needs_input_grad=(False, True, logits is not None) + (False,) * 5)
        _, d_grad_dot, d_logits_dot, *_ = _grad_penalty_backward_vjp(as_vjp, grad_dot, logits_dot)
        if logits is None:
            d_logits_dot = grad.new_zeros((0,))
        if value_dot is not None:
            one = torch.ones_like(grad_value)
            d_grad_1, d_logits_1 = _EagerGradPenaltyBackward.apply(one, grad, logits, ctx.row_norms,
                                                                   *ctx.penalty_args)
            d_grad_dot = d_grad_dot + value_dot.reshape(()) * d_grad_1
            d_logits_dot = d_logits_dot + value_dot.reshape(()) * d_logits_1
        return d_grad_dot, d_logits_dot


def _penalty_input_grads(ctx, grad_value, backward_op=None):
    """Gradients w.r.t. grad_penalty's six inputs from what the forward saved.

    ``backward_op`` records the backward (the eager Function, or the dispatcher op for torch.compile);
    None runs the kernel below autograd (nothing to record).
    """
    grad, logits, row_norms = ctx.saved_tensors
    args = (grad_value, grad, logits, row_norms, *ctx.penalty_args)
    if backward_op is None:
        with torch._C._AutoDispatchBelowAutograd():
            d_grad, d_logits = torch.ops.fastreg.grad_penalty_backward(*args)
    else:
        d_grad, d_logits = backward_op(*args)
    return (d_grad if ctx.needs_input_grad[0] else None,
            d_logits if logits is not None and ctx.needs_input_grad[1] else None,
            None, None, None, None)


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
    if _differentiated(x):
        return _EagerGaussianNoise.apply(x, sigma_rows, scale, generator)
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
    if _differentiated(x_real, x_fake):
        out, _ = _EagerRandomInterpolate.apply(x_real, x_fake, generator)
        return out
    with torch._C._AutoDispatchBelowAutograd():
        out, _ = torch.ops.fastreg.random_interpolate(x_real, x_fake, generator)
    return out


def _differentiated(*tensors: torch.Tensor) -> bool:
    """Whether a call must go through the eager autograd Function: reverse mode is recording one of
    ``tensors``, or a torch.func transform or a forward-mode AD level is active (a tensor of theirs
    need not report requires_grad, and the raw op would drop its tangent)."""
    return ((torch.is_grad_enabled() and any(t.requires_grad for t in tensors))
            or torch._C._are_functorch_transforms_active() or torch.autograd.forward_ad._current_level >= 0)


class _EagerGaussianNoise(torch.autograd.Function):
    """Eager autograd for gaussian_noise with the least Python on the path (see _EagerGradPenalty).

    torch.func: the jvp is the identity on x's tangent; under vmap each slice draws its own noise
    (fastreg.op_vmap: randomness="different" only).
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


class _EagerRandomInterpolate(torch.autograd.Function):
    """Eager autograd for random_interpolate; saves eps for the backward and the jvp (see _EagerGradPenalty)."""

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


# --- autograd ----------------------------------------------------------------------------------

def _setup_grad_penalty(ctx, inputs, output):
    grad, logits, weight, num_real, norm, target = inputs
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(grad, logits, output[1])
    ctx.penalty_args = (weight, num_real, norm, target)


def _grad_penalty_vjp(ctx, grad_value, _grad_row_norms):
    # row_norms is marked non-differentiable, so its cotangent is never used.
    return _penalty_input_grads(ctx, grad_value, torch.ops.fastreg.grad_penalty_backward)


def _setup_grad_penalty_backward(ctx, inputs, output):
    grad_value, grad, logits, _row_norms, weight, num_real, norm, target = inputs
    ctx.save_for_backward(grad_value, grad, logits)
    ctx.penalty_args = (weight, num_real, norm, target)


def _norm_terms(sum_sq: torch.Tensor, norm: str, target: float):
    """Per row (h(n), a = h'(n)/n, (da/dn)/n, flat, uncurved) from sum_sq = n^2.

    The first three are differentiable tensors. At n = 0 the gp forms take a = da/dn = 0 (the
    subgradient the kernels use); the masks keep inf/NaN out of every derivative there. ``flat``
    marks the rows where h is locally constant in g (the gp forms at n = 0, the one-sided form at or
    below its target), ``uncurved`` those where da/dn vanishes identically (always for sq): the
    terms these zeros multiply are exactly 0, as the kernels' (``csrc/common/penalty_backward.h``).
    """
    zeros = torch.zeros_like(sum_sq)
    if norm == "sq":
        never = torch.zeros_like(sum_sq, dtype=torch.bool)
        return sum_sq, zeros + 2, zeros, never, ~never
    nonzero = sum_sq != 0  # NaN counts as nonzero: it propagates
    root = torch.sqrt(torch.where(nonzero, sum_sq, torch.ones_like(sum_sq)))  # n, or 1 where n = 0
    excess = torch.where(nonzero, root, zeros) - target
    if norm == "gp_one_sided":
        flat = ~nonzero | (excess <= 0)
        excess = torch.nn.functional.relu(excess)
        curved = ~flat
    else:
        flat = ~nonzero
        curved = nonzero
    a = torch.where(nonzero, 2 * excess / root, zeros)
    a_over_n = torch.where(curved, 2 * target / (root * root * root), zeros)
    return excess * excess, a, a_over_n, flat, ~curved


def _weight_terms(logits, weight: str, num_real: int, rows: int, like: torch.Tensor):
    """(w, w', w'', constant) per row: differentiable tensors, and whether w does not depend on v."""
    kind, div = parse_weight(weight)
    if kind == "one":
        ones = like.new_ones(rows)
        return ones, ones * 0, ones * 0, True
    if kind == "f":
        d = get_divergence(div)
        constant = div in CONSTANT_WEIGHT_DIVERGENCES
        return d.weight(logits), d.weight_slope(logits), d.weight_curvature(logits), constant
    s, c = torch.sigmoid(logits), torch.sigmoid(-logits)
    is_real = torch.arange(rows, device=logits.device) < num_real
    w = torch.where(is_real, c * c, s * s)
    dw = torch.where(is_real, -2 * s * c * c, 2 * s * s * c)
    d2w = torch.where(is_real, -2 * s * c * c * (1 - 3 * s), 2 * s * s * c * (2 - 3 * s))
    return w, dw, d2w, False


CONSTANT_WEIGHT_DIVERGENCES = ("reverse_kl", "pearson")  # w_f(v) = 1 and 1/2: w' = w'' = 0 identically


def _unless(zero, x: torch.Tensor) -> torch.Tensor:
    """x, with exact zeros where ``zero`` (a bool, or a mask broadcastable to x) holds."""
    if isinstance(zero, bool):
        return torch.zeros_like(x) if zero else x
    return torch.where(zero, torch.zeros_like(x), x)


def _grad_penalty_backward_vjp(ctx, grad_grad_cot, grad_logits_cot):
    r"""VJP of the backward op, written with differentiable PyTorch ops.

    With :math:`c = \bar y/B`, :math:`a = h'(n)/n`, :math:`P_i = \langle g_i, G_i\rangle`
    (G, V the cotangents of d_grad and d_logits), the backward computes
    :math:`dg_i = c\,w_i a_i g_i`, :math:`dv_i = c\,w'_i h_i`, so

    - :math:`\partial/\partial \bar y = \frac1B\sum_i (w_i a_i P_i + w'_i h_i V_i)`
    - :math:`\partial/\partial g_i = c\,w_i a_i G_i + c\,(w_i \tfrac{a'_i}{n_i} P_i + w'_i a_i V_i)\,g_i`
    - :math:`\partial/\partial v_i = c\,(w'_i a_i P_i + w''_i h_i V_i)`.

    A term with a factor that vanishes identically (a where h is flat, a' where it is uncurved,
    w' and w'' for constant weights) is exactly 0, even where its other factors are inf or NaN.
    """
    grad_value, grad, logits = ctx.saved_tensors
    weight, num_real, norm, target = ctx.penalty_args
    rows = grad.shape[0]
    g = grad.reshape(rows, -1)
    sum_sq = (g * g).sum(dim=1)
    h, a, a_over_n, flat, uncurved = _norm_terms(sum_sq, norm, target)
    w, dw, d2w, constant = _weight_terms(logits, weight, num_real, rows, g)
    c = grad_value.reshape(()) / rows
    G = grad_grad_cot.reshape(rows, -1) if grad_grad_cot is not None else torch.zeros_like(g)
    V = grad_logits_cot if grad_logits_cot is not None and logits is not None else torch.zeros_like(sum_sq)
    P = (g * G).sum(dim=1)
    d_value = ((_unless(flat, w * a * P) + _unless(constant, dw * h * V)).sum() / rows).reshape(grad_value.shape)
    d_grad = (_unless(flat[:, None], (c * w * a)[:, None] * G)
              + _unless(uncurved[:, None], (c * w * a_over_n * P)[:, None] * g)
              + _unless(flat[:, None] | constant, (c * dw * a * V)[:, None] * g)).reshape(grad.shape)
    d_logits = None
    if logits is not None:
        d_logits = c * (_unless(flat | constant, dw * a * P) + _unless(constant, d2w * h * V))
    needs = ctx.needs_input_grad
    return (d_value if needs[0] else None, d_grad if needs[1] else None,
            d_logits if needs[2] else None, None, None, None, None, None)


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


def _register() -> None:
    torch.library.register_fake("fastreg::grad_penalty", _grad_penalty_fake)
    torch.library.register_fake("fastreg::grad_penalty_backward", _grad_penalty_backward_fake)
    torch.library.register_autograd("fastreg::grad_penalty", _grad_penalty_vjp, setup_context=_setup_grad_penalty)
    torch.library.register_autograd("fastreg::grad_penalty_backward", _grad_penalty_backward_vjp,
                                    setup_context=_setup_grad_penalty_backward)
    torch.library.register_fake("fastreg::gaussian_noise", _gaussian_noise_fake)
    torch.library.register_fake("fastreg::random_interpolate", _random_interpolate_fake)
    torch.library.register_autograd("fastreg::gaussian_noise", _gaussian_noise_vjp)
    torch.library.register_autograd("fastreg::random_interpolate", _random_interpolate_vjp,
                                    setup_context=_setup_random_interpolate)
    op_vmap.register()
    op_order.register_effects()
    op_order.install_inductor_lowerings_if_loaded()


if extension_loaded():
    _register()
