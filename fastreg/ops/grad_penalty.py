"""grad_penalty: the public wrapper, its fake kernels and its autograd (csrc/cpu/grad_penalty.cpp and
csrc/cuda/grad_penalty.cu are the kernels; schemas in csrc/fastreg.cpp).

The op ``torch.ops.fastreg.grad_penalty`` returns (value, row_norms); its backward is the internal op
``torch.ops.fastreg._grad_penalty_backward``, differentiable once more with the formulas below. Eager
calls of :func:`grad_penalty` go through :class:`EagerGradPenalty`, which calls the kernels below the
Autograd dispatch key (the least Python on the path) and supports torch.func (``setup_context``,
forward-mode ``jvp``, ``generate_vmap_rule`` with the batching rules of :mod:`fastreg.ops.vmap`).
torch.compile and direct ``torch.ops.fastreg.*`` calls use the same formulas through
``torch.library.register_autograd`` (:func:`register`).
"""

from __future__ import annotations

import types

import torch

from ..divergences import get_divergence
from . import reference
from ._checks import accumulate_type, check_grad_penalty_args, check_grad_penalty_backward_args, parse_weight
from .backend import use_native
from .eager_function import signature_bound_once

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
    check_grad_penalty_args(grad, logits, weight, num_real, norm, target)
    if not use_native(grad.device):
        return reference.grad_penalty(grad, logits, weight=weight, num_real=num_real, norm=norm, target=target)
    if torch.compiler.is_compiling():
        value, _ = torch.ops.fastreg.grad_penalty(grad, logits, weight, num_real, norm, float(target))
        return value
    value, _ = EagerGradPenalty.apply(grad, logits, weight, num_real, norm, float(target))
    return value


# --- fake (meta) kernels ---------------------------------------------------------------------

def _grad_penalty_fake(grad, logits, weight="one", num_real=0, norm="sq", target=1.0):
    check_grad_penalty_args(grad, logits, weight, num_real, norm, target)
    value = grad.new_empty(())
    row_norms = grad.new_empty((grad.shape[0],), dtype=accumulate_type(grad.dtype))
    return value, row_norms


def _grad_penalty_backward_fake(grad_value, grad, logits, row_norms, weight, num_real, norm, target):
    # Also the Meta kernel: a meta tensor among CPU ones dispatches here, so the devices are checked too.
    check_grad_penalty_backward_args(grad_value, grad, logits, row_norms, weight, num_real, norm, target)
    grad_logits = torch.empty_like(logits) if logits is not None else grad.new_empty((0,))
    return torch.empty_like(grad, memory_format=torch.contiguous_format), grad_logits


# --- autograd --------------------------------------------------------------------------------

@signature_bound_once
class EagerGradPenalty(torch.autograd.Function):
    """Eager-mode autograd for grad_penalty with the least Python on the path.

    Same kernels and formulas as the registration below (which torch.compile
    and direct ``torch.ops.fastreg.grad_penalty`` calls use), but the kernels
    are called below the Autograd dispatch key, skipping the generic Python
    autograd wrapper that torch.library adds on every call (about 100 us per
    forward+backward on a CPU, as much as the kernels themselves at 128x3x32x32).
    When the backward itself is recorded (create_graph=True, or under
    torch.func) it goes through EagerGradPenaltyBackward, whose backward (the
    formula torch.compile uses too) gives the double backward.

    torch.func: ``setup_context`` (forward takes no ctx), a forward-mode ``jvp``
    and ``generate_vmap_rule`` (the ops' batching rules are in fastreg.ops.vmap),
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
        return _penalty_input_grads(ctx, grad_value, EagerGradPenaltyBackward.apply if recorded else None)

    @staticmethod
    def jvp(ctx, grad_dot, logits_dot, *_):
        r"""d value = \sum_i <dvalue/dg_i, dg_i> + dvalue/dv_i dv_i, from the backward op at grad_value = 1."""
        grad, logits, row_norms = ctx.saved_tensors
        one = torch.ones((), dtype=grad.dtype, device=grad.device)
        d_grad, d_logits = EagerGradPenaltyBackward.apply(one, grad, logits, row_norms, *ctx.penalty_args)
        acc = row_norms.dtype
        value_dot = torch.zeros((), dtype=acc, device=grad.device)
        if grad_dot is not None:
            value_dot = value_dot + (d_grad.to(acc) * grad_dot.to(acc)).sum()
        if logits is not None and logits_dot is not None:
            value_dot = value_dot + (d_logits.to(acc) * logits_dot.to(acc)).sum()
        return value_dot.to(grad.dtype), None


@signature_bound_once
class EagerGradPenaltyBackward(torch.autograd.Function):
    """grad_penalty_backward as an eager autograd Function: the double backward of EagerGradPenalty and
    its torch.func transforms (the torch.library autograd of the op, which torch.compile uses, does not
    support torch.func). Backward: _grad_penalty_backward_vjp; jvp below; vmap from fastreg.ops.vmap.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(grad_value, grad, logits, row_norms, weight, num_real, norm, target):
        with torch._C._AutoDispatchBelowAutograd():
            return torch.ops.fastreg._grad_penalty_backward(grad_value, grad, logits, row_norms, weight, num_real,
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
            d_grad_1, d_logits_1 = EagerGradPenaltyBackward.apply(one, grad, logits, ctx.row_norms,
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
            d_grad, d_logits = torch.ops.fastreg._grad_penalty_backward(*args)
    else:
        d_grad, d_logits = backward_op(*args)
    return (d_grad if ctx.needs_input_grad[0] else None,
            d_logits if logits is not None and ctx.needs_input_grad[1] else None,
            None, None, None, None)


def _setup_grad_penalty(ctx, inputs, output):
    grad, logits, weight, num_real, norm, target = inputs
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(grad, logits, output[1])
    ctx.penalty_args = (weight, num_real, norm, target)


def _grad_penalty_vjp(ctx, grad_value, _grad_row_norms):
    # row_norms is marked non-differentiable, so its cotangent is never used.
    return _penalty_input_grads(ctx, grad_value, torch.ops.fastreg._grad_penalty_backward)


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


def register() -> None:
    """Register the fake kernels and the autograd of grad_penalty and _grad_penalty_backward (once, by fastreg.ops)."""
    torch.library.register_fake("fastreg::grad_penalty", _grad_penalty_fake)
    torch.library.register_fake("fastreg::_grad_penalty_backward", _grad_penalty_backward_fake)
    torch.library.register_autograd("fastreg::grad_penalty", _grad_penalty_vjp, setup_context=_setup_grad_penalty)
    torch.library.register_autograd("fastreg::_grad_penalty_backward", _grad_penalty_backward_vjp,
                                    setup_context=_setup_grad_penalty_backward)
