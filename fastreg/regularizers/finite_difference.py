r"""The parameter gradient of a gradient penalty without double backward: a finite-difference estimator.

A penalty of the fused op :func:`fastreg.ops.grad_penalty` is :math:`\Omega(g, v)` with
:math:`g_i = \nabla_{x_i} V(x)`, :math:`V = \sum_j v_j`, :math:`v = D(x; \theta)`. Its gradient is

.. math::

    \nabla_\theta \Omega = \sum_i b_i\,\nabla_\theta v_i + \sum_i (\partial g_i / \partial\theta)^T a_i,
    \qquad a_i = \partial\Omega/\partial g_i,\quad b_i = \partial\Omega/\partial v_i .

``penalty_grad="exact"`` (the default of every penalty) gets the second sum from autograd with
``create_graph=True``: a double backward through D. ``"finite-difference"`` needs first-order autograd
only. :math:`a` and :math:`b` are the fused op's own first-order backward (the weights :math:`w(v)` and norms
:math:`h(\lVert g\rVert)` of docs/design.md section 8.1: for ``"sq"`` :math:`a_i = 2 w_i g_i / B`,
:math:`b_i = w'(v_i)\,h(\lVert g_i\rVert) / B`), so the first sum is exact. The second is a directional
derivative of :math:`\nabla_\theta V` along :math:`a`, :math:`(\partial g/\partial\theta)^T a =
\nabla_\theta\, \tfrac{d}{d\epsilon} V(x + \epsilon a)|_0`, estimated by a finite difference: for a D whose
logit of one sample depends on that sample only, with :math:`\alpha_i = \lVert a_i\rVert`,
:math:`u_i = a_i / \alpha_i`, the one-sided difference (``SCHEME = "forward"``, the default)

.. math::

    \sum_i (\partial g_i/\partial\theta)^T a_i \approx \nabla_\theta \sum_i \alpha_i\,
    \frac{v(x_i + h_i u_i) - v(x_i)}{h_i},

whose second point :math:`v(x_i)` is the loss's own forward (already computed, its graph kept for the loss's
backward): one perturbed forward. ``SCHEME = "central"`` takes :math:`(v(x_i + h_i u_i) - v(x_i - h_i
u_i)) / (2h_i)` instead (two perturbed forwards; the design before issue 26). Either is a finite-difference
Hessian-vector product (e.g. Nocedal & Wright, "Numerical Optimization", 2nd ed., section 8.1, and Pearlmutter
1994, "Fast Exact Multiplication by the Hessian", for the exact counterpart), here of the mixed Hessian
:math:`\partial^2 v / \partial\theta\,\partial x`. The one-sided error is :math:`O(h)` (second derivatives of
:math:`\nabla_\theta v` in x) plus rounding :math:`O(\varepsilon / h)`, balanced by :math:`h_i =
\varepsilon^{1/2} \max(\lVert x_i\rVert, 1)`; the central one :math:`O(h^2) + O(\varepsilon/h)`, balanced by
:math:`h_i = \varepsilon^{1/3} \max(\lVert x_i\rVert, 1)`; :math:`\varepsilon` is the machine epsilon of D's
compute dtype (the autocast dtype under autocast).

The surrogate loss :math:`S = \sum_i \bar b_i v_i + \sum_i \bar\alpha_i (v(x_i + h_i u_i) - v(x_i)) / h_i`
(bars: detached) is returned as :math:`\Omega + S - \bar S`: its value is the true penalty (logs do not change)
and its ordinary backward gives the estimate above. With ``EARLY_BACKWARD`` (the default, D an ``nn.Module``)
the perturbed term's gradient (D's parameters, and the inputs where they require grad) is taken at once with
``autograd.grad`` and its graph freed; the surrogate carries it as a zero whose backward hands it on
(:class:`_PrecomputedGradient`), scaled by the loss's weight. Only the loss forward's graph then waits for the
loss's backward, and a D that does not couple its batch sees the perturbed rows in calls of at most
``PERTURBED_ROWS_PER_CALL`` rows, each differentiated before the next runs, so that their graphs never coexist.
The perturbed points keep their link to the inputs, so when the inputs depend on upstream parameters (a penalty
on non-detached fakes) their gradient gets the same estimate of :math:`H_x a` (Hessian in x) plus the exact
:math:`b_i \nabla_x v_i`.

Accuracy (tests/test_penalty_gradient.py, relative error of the parameter gradient against the exact double
backward). float64, one-sided: 1e-8 to 1.3e-7 on MLP, DCGAN (no, batch and layer norm) and attention Ds for
every weight and norm (cosine similarity 1 - 1e-14 or closer); central: 1e-11 to 3e-9. float32, the smooth
attention D (GELU) against the float64 exact gradient: 1.7e-3 one-sided, 2e-4 central. A piecewise-linear D
(ReLU, LeakyReLU: the DCGAN D) is different: inside
one linear region the difference has no truncation error, but a unit whose pre-activation changes sign
between the two points makes it the slope averaged over the segment, while the exact
double backward takes the second derivative of the activation as 0; and in float32 the two evaluations of
:math:`\nabla_\theta v` cancel to a few bits when D's input gradient is small (a DCGAN D at
initialization). Its float32 estimate then differs from the exact gradient by the size of that gradient
(measured relative error 0.5 to 6 at initialization, central difference): it is the gradient of the penalty on the
segment-averaged input gradient, and whether training notices is measured by training, not assumed.

A D that couples the samples of its batch (batch norm in training mode, :func:`fastreg.regularizers.couples_batch`)
is differentiated as a function of the whole batch: one direction :math:`a / k` with :math:`k` the RMS of the
:math:`\alpha_i`, :math:`k (V(x + hA/k) - V(x)) / h` (central: :math:`k (V(x + hA/k) - V(x - hA/k)) / (2h)`),
:math:`h` as above with :math:`\mathrm{rms}_i \lVert x_i\rVert`, each perturbed batch in its own call (and,
early, differentiated before the next batch's call). Its batch-norm running statistics (and
``num_batches_tracked``) are restored after the perturbed forwards, so they are updated once per D forward
as under the exact gradient. D must be deterministic between its forwards (no dropout in training mode):
the difference of two forwards with different random masks is not a derivative.

Only first-order autograd is used, so this composes with a ``torch.compile``'d D, fused attention kernels
(``scaled_dot_product_attention``'s flash / memory-efficient backends, which have no double backward)
and CUDA graph capture. Cost: one more D forward on the perturbed rows and its backward, instead of the
double backward. What each choice bought (benchmarks/fd_variants.py, Roth's D step, batch 64, 32x32, 1 thread,
interleaved medians under load, ratios to the exact step): the central design cost 1.67x time and 1.80x peak
memory on the DCGAN batch-norm D, 1.25x and 1.11x on the attention D; one-sided, 1.07x / 1.21x and 0.90x /
0.74x; one-sided with the early backward, 1.11x / 0.97x and 0.80x / 0.74x; and with 64 perturbed rows per call
(the attention D's joint batch is 128 rows), 0.67x / 0.57x on the attention D. The batch-norm D stays at about
the exact step's cost: each of its batches must be re-run whole (a full forward and backward), which costs
what the double backward does.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn as nn

def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """D's compute dtype for input ``x``: the autocast dtype when autocast is on for x's device, else x's."""
    kind = x.device.type
    if torch.is_autocast_enabled(kind) and x.dtype in (torch.float32, torch.float16, torch.bfloat16):
        return torch.get_autocast_dtype(kind)
    return x.dtype


def relative_step(dtype: torch.dtype) -> float:
    r""":math:`\varepsilon^{1/3}` of ``dtype``: the central difference's step per unit of input norm."""
    return torch.finfo(dtype).eps ** (1.0 / 3.0)


def keep_graphs_of_compiled_modules() -> None:
    """Let AOTAutograd's compiled backwards run with ``retain_graph=True``, which the estimate needs (the input
    gradient is taken before the loss's backward through the same graph). AOTAutograd donates buffers of a
    compiled backward by default (a memory saving), and such a backward refuses ``retain_graph``; this sets
    ``torch._functorch.config.donated_buffer = False`` for the process. Call it before a compiled D first runs
    (the trainer does under ``compile=forward``)."""
    import torch._functorch.config as functorch_config

    functorch_config.donated_buffer = False


def first_order_input_gradients(vs: Sequence[torch.Tensor], xs: Sequence[torch.Tensor], scaler) -> tuple:
    r""":math:`\nabla_{x_k} \sum_i v_{k,i}` without ``create_graph`` (the graph is kept for the loss's
    backward), scaled and unscaled by ``scaler`` (the AMP recipe)."""
    total = sum(v.sum() for v in vs)
    if scaler is not None and scaler.is_enabled():
        total = scaler.scale(total)
    try:
        grads = torch.autograd.grad(total, list(xs), retain_graph=True)
    except RuntimeError as exc:
        if "donated buffers" not in str(exc):
            raise
        raise RuntimeError("penalty_grad='finite-difference' takes D's input gradient with retain_graph=True, "
                           "which a torch.compile'd D compiled with donated buffers refuses; call "
                           "fastreg.regularizers.finite_difference.keep_graphs_of_compiled_modules() before D is "
                           "first compiled") from exc
    if scaler is not None and scaler.is_enabled():
        return tuple(g * (1.0 / scaler.get_scale()) for g in grads)
    return grads


def _rows(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


def _per_row(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.reshape((like.shape[0],) + (1,) * (like.dim() - 1))


def batch_norm_buffers(D) -> list[torch.Tensor]:
    if not isinstance(D, nn.Module):
        return []
    return [b for m in D.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) for b in m.buffers()]


SCHEMES = ("forward", "central")
SCHEME = "forward"    # the default difference: one-sided, reusing the loss forward's logits
EARLY_BACKWARD = True  # the perturbed forward's parameter gradient taken at once and its graph freed
PERTURBED_ROWS_PER_CALL = 64  # a D that does not couple its batch sees the perturbed rows in calls this large


def relative_step_for(scheme: str, dtype: torch.dtype) -> float:
    r"""The difference's step per unit of input norm: :math:`\varepsilon^{1/2}` (one-sided, ``forward``) or
    :math:`\varepsilon^{1/3}` (``central``), the steps that balance truncation against rounding."""
    if scheme == "central":
        return relative_step(dtype)
    if scheme == "forward":
        return torch.finfo(dtype).eps ** 0.5
    raise ValueError(f"finite_difference_penalty: scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")


class _PrecomputedGradient(torch.autograd.Function):
    """A zero whose backward hands ``grad_output * g`` to each target: the parameter (and input) gradient of a
    term already differentiated, so that the term's graph could be freed before the loss's backward."""

    @staticmethod
    def forward(ctx, grads, *targets):
        ctx.grads = grads
        return targets[0].new_zeros(())

    @staticmethod
    def backward(ctx, grad_output):
        return (None, *(None if g is None else grad_output.to(g.dtype) * g for g in ctx.grads))


def _settled(term: torch.Tensor, D, xs, early: bool) -> torch.Tensor:
    """``term`` itself, or (``early`` and D a module) a zero carrying its gradient, its graph already freed."""
    if not early or not isinstance(D, nn.Module):
        return term
    targets = [p for p in D.parameters() if p.requires_grad] + [x for x in xs if x.requires_grad]
    if not targets:
        return term
    grads = torch.autograd.grad(term, targets, allow_unused=True)
    return _PrecomputedGradient.apply(tuple(grads), *targets).to(term.dtype)


def finite_difference_penalty(logits: Callable[[torch.Tensor], torch.Tensor], D, xs: Sequence[torch.Tensor],
                              vs: Sequence[torch.Tensor], gs: Sequence[torch.Tensor],
                              penalty: Callable[[list, list], torch.Tensor], coupled: bool, *,
                              scheme: str | None = None, early: bool | None = None) -> torch.Tensor:
    r"""The penalty :math:`\Omega` = ``penalty(gs, vs)`` with the finite-difference parameter gradient.

    ``xs``: the batches D was called on (``vs[k] = logits(xs[k])``, graph attached); ``gs``: their input
    gradients from :func:`first_order_input_gradients`; ``penalty``: the penalty as a function of lists of
    input gradients and logits (the fused op's calls); ``coupled``: D couples its batch (each batch then
    perturbed as a whole, in its own call). The value is :math:`\Omega`'s; the backward gives
    :math:`\sum_i b_i \nabla v_i` exactly plus the difference of the module docstring: ``scheme`` ``"forward"``
    (the default: one perturbed forward, the other point being the loss's own logits ``vs``) or ``"central"``
    (two); ``early`` (default true): the perturbed forward's gradient is taken at once and its graph freed.
    """
    scheme = SCHEME if scheme is None else scheme
    early = EARLY_BACKWARD if early is None else early
    relative_step_for(scheme, torch.float32)  # checks the name
    g_leaves = [g.detach().requires_grad_() for g in gs]
    v_leaves = [v.detach().requires_grad_() for v in vs]
    with torch.enable_grad():
        value = penalty(g_leaves, v_leaves)
        derivs = torch.autograd.grad(value, g_leaves + v_leaves, allow_unused=True)
    a_list, b_list = derivs[:len(gs)], derivs[len(gs):]
    surrogate = value.new_zeros(())
    for v, b in zip(vs, b_list):
        if b is not None:
            surrogate = surrogate + (b.to(v.dtype) * v).sum().to(value.dtype)
    triples = [(x, v, a) for x, v, a in zip(xs, vs, a_list) if a is not None]
    if coupled:
        for x, v, a in triples:
            own, perturbed = _batch_difference(logits, D, x, v, a, scheme)
            surrogate = surrogate + own.to(value.dtype) + _settled(perturbed, D, xs, early).to(value.dtype)
    elif triples:
        chunked = early and isinstance(D, nn.Module)  # smaller calls free memory only when each is settled
        own, settled = _row_differences(logits, triples, scheme, lambda t: _settled(t, D, xs, early),
                                        PERTURBED_ROWS_PER_CALL if chunked else None)
        surrogate = surrogate + own.to(value.dtype) + sum(t.to(value.dtype) for t in settled)
    return value.detach() + (surrogate - surrogate.detach())


def _row_differences(logits, triples, scheme: str, settle: Callable, rows_per_call: int | None):
    r"""(the term on the loss's own logits, the settled terms on the perturbed rows) of
    :math:`\sum_i \bar\alpha_i (v(x_i + h_i u_i) - v(x_i)) / h_i` (``forward``) or
    :math:`\sum_i \bar\alpha_i (v(x_i + h_i u_i) - v(x_i - h_i u_i)) / (2 h_i)` (``central``, own term 0) over
    the rows of every batch: the perturbed rows of all batches in calls of D of at most ``rows_per_call`` rows
    (None: one call), each ``settle``\ d (differentiated, its graph freed) before the next call runs."""
    points, coefficients, own = [], [], None
    for x, v, a in triples:
        a = a.to(x.dtype)
        alpha = _rows(a).norm(dim=1)
        step = relative_step_for(scheme, compute_dtype(x)) * _rows(x.detach()).norm(dim=1).clamp_min(1.0)
        direction = a / _per_row(torch.where(alpha > 0, alpha, torch.ones_like(alpha)), a)
        shift = _per_row(step, x) * direction
        if scheme == "forward":
            points.append(x + shift)
            coefficients.append(alpha / step)
            term = -((alpha / step).to(v.dtype) * v).sum()
            own = term if own is None else own + term
        else:
            points += [x + shift, x - shift]
            coefficients += [alpha / (2 * step), -alpha / (2 * step)]
    points, coefficients = torch.cat(points), torch.cat(coefficients)
    size = points.shape[0] if rows_per_call is None else rows_per_call
    settled = []
    for start in range(0, points.shape[0], size):
        v = logits(points[start:start + size])
        settled.append(settle((coefficients[start:start + size].to(v.dtype) * v).sum()))
    return (points.new_zeros(()) if own is None else own), settled


def _batch_difference(logits, D, x: torch.Tensor, v: torch.Tensor, a: torch.Tensor,
                      scheme: str) -> tuple[torch.Tensor, torch.Tensor]:
    r"""(own term, perturbed term) of :math:`\bar k (V(x + hA/k) - V(x)) / h` (``forward``, :math:`V(x)` the loss's
    own logits ``v``) or :math:`\bar k (V(x + hA/k) - V(x - hA/k)) / (2h)` (``central``) for a batch-coupled D,
    its batch-norm running statistics restored after the perturbed calls."""
    a = a.to(x.dtype)
    k = _rows(a).norm(dim=1).square().mean().sqrt()
    scale = _rows(x.detach()).norm(dim=1).square().mean().sqrt().clamp_min(1.0)
    step = relative_step_for(scheme, compute_dtype(x)) * scale
    shift = (step / torch.where(k > 0, k, torch.ones_like(k))) * a
    buffers = batch_norm_buffers(D)
    saved = [b.clone() for b in buffers]
    if scheme == "forward":
        v_plus = logits(x + shift)
        c = (k / step).to(v_plus.dtype)
        own, perturbed = -c * v.sum(), c * v_plus.sum()
    else:
        v_plus, v_minus = logits(x + shift), logits(x - shift)
        own, perturbed = v_plus.new_zeros(()), (k / (2 * step)).to(v_plus.dtype) * (v_plus.sum() - v_minus.sum())
    with torch.no_grad():
        for b, s in zip(buffers, saved):
            # Through .data: batch norm updates its running statistics without bumping their version
            # counter (its backward in training mode does not read them); a plain copy_ would, and the
            # pending backward of the loss's forward would refuse the "modified" buffers.
            b.data.copy_(s)
    return own, perturbed
