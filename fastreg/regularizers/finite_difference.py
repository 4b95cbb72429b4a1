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
\nabla_\theta\, \tfrac{d}{d\epsilon} V(x + \epsilon a)|_0`, estimated by a central difference: for a D whose
logit of one sample depends on that sample only, with :math:`\alpha_i = \lVert a_i\rVert`,
:math:`u_i = a_i / \alpha_i`,

.. math::

    \sum_i (\partial g_i/\partial\theta)^T a_i \approx \nabla_\theta \sum_i \alpha_i\,
    \frac{v(x_i + h_i u_i) - v(x_i - h_i u_i)}{2 h_i},

the finite-difference Hessian-vector product (e.g. Nocedal & Wright, "Numerical Optimization", 2nd ed.,
section 8.1, and Pearlmutter 1994, "Fast Exact Multiplication by the Hessian", for the exact counterpart),
here of the mixed Hessian :math:`\partial^2 v / \partial\theta\,\partial x`. Its error is
:math:`O(h^2)` (third derivatives of D) plus rounding :math:`O(\varepsilon / h)`; the step is
:math:`h_i = \varepsilon^{1/3} \max(\lVert x_i\rVert, 1)`, :math:`\varepsilon` the machine epsilon of D's
compute dtype (the autocast dtype under autocast), the step that balances the two for a central
difference, relative to the input's scale (6e-6 |x| in float64, 4.9e-3 |x| in float32).

The surrogate loss :math:`S = \sum_i \bar b_i v_i + \sum_i \bar\alpha_i (v(x_i + h_i u_i) - v(x_i - h_i u_i))
/ (2h_i)` (bars: detached) is returned as :math:`\Omega + S - \bar S`: its value is the true penalty (logs do
not change) and its ordinary backward gives the estimate above. The perturbed points keep their link to
the inputs, so when the inputs depend on upstream parameters (a penalty on non-detached fakes) their
gradient gets the same estimate of :math:`H_x a` (Hessian in x) plus the exact :math:`b_i \nabla_x v_i`.

Accuracy (tests/test_penalty_gradient.py, float64, relative error of the parameter gradient): 1e-11 to 3e-9
on MLP, DCGAN (no, batch and layer norm) and attention Ds for every weight and norm. In float32, a smooth D
(attention, GELU) gets about 2e-4. A piecewise-linear D (ReLU, LeakyReLU: the DCGAN D) is different: inside
one linear region the difference has no truncation error, but a unit whose pre-activation changes sign
between :math:`x - hu` and :math:`x + hu` makes it the slope averaged over the segment, while the exact
double backward takes the second derivative of the activation as 0; and in float32 the two evaluations of
:math:`\nabla_\theta v` cancel to a few bits when D's input gradient is small (a DCGAN D at
initialization). Its float32 estimate then differs from the exact gradient by the size of that gradient
(measured relative error 0.5 to 6 at initialization): it is the gradient of the penalty on the
segment-averaged input gradient, and whether training notices is measured by training, not assumed.

A D that couples the samples of its batch (batch norm in training mode, :func:`fastreg.regularizers.couples_batch`)
is differentiated as a function of the whole batch: one direction :math:`a / k` with :math:`k` the RMS of the
:math:`\alpha_i`, :math:`k (V(x + hA/k) - V(x - hA/k)) / (2h)`, :math:`h = \varepsilon^{1/3}\max(\mathrm{rms}_i
\lVert x_i\rVert, 1)`, each perturbed batch in its own call. Its batch-norm running statistics (and
``num_batches_tracked``) are restored after the perturbed forwards, so they are updated once per D forward
as under the exact gradient. D must be deterministic between its forwards (no dropout in training mode):
the difference of two forwards with different random masks is not a derivative.

Only first-order autograd is used, so this composes with a ``torch.compile``'d D, fused attention kernels
(``scaled_dot_product_attention``'s flash / memory-efficient backends, which have no double backward)
and CUDA graph capture. Cost: one more D forward on twice the perturbed rows and its backward, instead
of the double backward; no second graph is kept alive.
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


def _batch_norm_buffers(D) -> list[torch.Tensor]:
    if not isinstance(D, nn.Module):
        return []
    return [b for m in D.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) for b in m.buffers()]


def finite_difference_penalty(logits: Callable[[torch.Tensor], torch.Tensor], D, xs: Sequence[torch.Tensor],
                              vs: Sequence[torch.Tensor], gs: Sequence[torch.Tensor],
                              penalty: Callable[[list, list], torch.Tensor], coupled: bool) -> torch.Tensor:
    r"""The penalty :math:`\Omega` = ``penalty(gs, vs)`` with the finite-difference parameter gradient.

    ``xs``: the batches D was called on (``vs[k] = logits(xs[k])``, graph attached); ``gs``: their input
    gradients from :func:`first_order_input_gradients`; ``penalty``: the penalty as a function of lists of
    input gradients and logits (the fused op's calls); ``coupled``: D couples its batch (each batch then
    perturbed as a whole, in its own call). The value is :math:`\Omega`'s; the backward gives
    :math:`\sum_i b_i \nabla v_i` exactly plus the central difference of the module docstring.
    """
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
    pairs = [(x, a) for x, a in zip(xs, a_list) if a is not None]
    if coupled:
        for x, a in pairs:
            surrogate = surrogate + _batch_difference(logits, D, x, a).to(value.dtype)
    elif pairs:
        surrogate = surrogate + _row_differences(logits, pairs).to(value.dtype)
    return value.detach() + (surrogate - surrogate.detach())


def _row_differences(logits, pairs) -> torch.Tensor:
    r""":math:`\sum_i \bar\alpha_i (v(x_i + h_i u_i) - v(x_i - h_i u_i)) / (2 h_i)` over the rows of every
    batch, all perturbed rows in one call of D."""
    points, coefficients = [], []
    for x, a in pairs:
        a = a.to(x.dtype)
        alpha = _rows(a).norm(dim=1)
        step = relative_step(compute_dtype(x)) * _rows(x.detach()).norm(dim=1).clamp_min(1.0)
        direction = a / _per_row(torch.where(alpha > 0, alpha, torch.ones_like(alpha)), a)
        shift = _per_row(step, x) * direction
        points += [x + shift, x - shift]
        coefficients.append(alpha / (2 * step))
    v = logits(torch.cat(points))
    total, start = v.new_zeros(()), 0
    for (x, _), c in zip(pairs, coefficients):
        n = x.shape[0]
        total = total + (c.to(v.dtype) * (v[start:start + n] - v[start + n:start + 2 * n])).sum()
        start += 2 * n
    return total


def _batch_difference(logits, D, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    r""":math:`\bar k (V(x + hA/k) - V(x - hA/k)) / (2h)` for a batch-coupled D, its batch-norm running
    statistics restored after the two calls."""
    a = a.to(x.dtype)
    k = _rows(a).norm(dim=1).square().mean().sqrt()
    step = relative_step(compute_dtype(x)) * _rows(x.detach()).norm(dim=1).square().mean().sqrt().clamp_min(1.0)
    shift = (step / torch.where(k > 0, k, torch.ones_like(k))) * a
    buffers = _batch_norm_buffers(D)
    saved = [b.clone() for b in buffers]
    v_plus, v_minus = logits(x + shift), logits(x - shift)
    with torch.no_grad():
        for b, s in zip(buffers, saved):
            # Through .data: batch norm updates its running statistics without bumping their version
            # counter (its backward in training mode does not read them); a plain copy_ would, and the
            # pending backward of the loss's forward would refuse the "modified" buffers.
            b.data.copy_(s)
    return (k / (2 * step)).to(v_plus.dtype) * (v_plus.sum() - v_minus.sum())
