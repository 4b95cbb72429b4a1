r"""The gradient penalties (docs/design.md section 3), one result type: :class:`Penalty`.

- :func:`roth_penalty`: Roth, Lucchi, Nowozin, Hofmann 2017's regularizer (symmetric JS form
  for ``gan``/``ns``/``bgan``, :math:`\Omega_f` for ``fgan:<div>``), its D forwards shared with
  the main loss: one joint forward, or one per batch when D couples the samples of a batch.
- :func:`wgan_gp_penalty`: WGAN-GP's penalty on interpolates, two-sided and one-sided (Gulrajani et al. 2017).
- :func:`r1_penalty`, :func:`r2_penalty`: Mescheder, Geiger, Nowozin 2018.

Every penalty returns ``Penalty(penalty, v_real, v_fake)``: the *unweighted* penalty and D's logits on the
real and the fake batch where the penalty's own forward computed them (None where it did not), so the D loss
reuses them. The caller adds the penalty with its weight (:math:`\gamma/2` for Roth, R1, R2; :math:`\lambda`
for WGAN-GP; the defaults and this rule are rows of :data:`fastreg.regularizers.REGULARIZERS`, whose
``penalty`` method also returns both logits). The norms go through the fused op
:func:`fastreg.ops.grad_penalty`, differentiable twice, so the D loss backpropagates into D's parameters
through :math:`\nabla_x v`.

Inputs are used as given (nothing is detached); one that does not require grad is replaced by a
detached alias that does. Pass detached fakes (``G(z).detach()``) for a D step.

``penalty_grad``: every penalty takes ``"exact"`` (the default: ``create_graph=True`` and a double backward
through D) or ``"finite-difference"``: the same value, with a parameter gradient that needs first-order
autograd only (:mod:`fastreg.regularizers.finite_difference`), so it composes with a ``torch.compile``'d D
and fused attention kernels, which have no double backward. The choice is made in one place,
:func:`_penalized`.

Mixed precision follows PyTorch's AMP recipe for gradient penalties: with a ``scaler``
(:class:`torch.amp.GradScaler`) the logits are scaled before ``autograd.grad`` and the input
gradient unscaled after it; under ``torch.autocast`` the penalty itself is computed in float32
(float64 stays float64) with autocast off.
"""

from __future__ import annotations

import warnings
import weakref
from typing import Callable, NamedTuple

import torch
import torch.nn as nn

from ..divergences import DIVERGENCES
from ..ops.grad_penalty import grad_penalty
from ..ops.random_ops import random_interpolate as fused_random_interpolate
from .finite_difference import batch_norm_buffers, finite_difference_penalty, first_order_input_gradients

FORWARD_MODES = ("auto", "joint", "separate")
PENALTY_GRADS = ("exact", "finite-difference")  # how the penalty's parameter gradient is taken: _penalized

Discriminator = Callable[[torch.Tensor], torch.Tensor]


class Penalty(NamedTuple):
    """What every penalty returns: the unweighted penalty and D's logits on the real and the fake batch
    from the penalty's own forwards (None for a batch it did not run D on), for the D loss."""

    penalty: torch.Tensor
    v_real: torch.Tensor | None
    v_fake: torch.Tensor | None


def random_interpolate(x_real: torch.Tensor, x_fake: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    r""":math:`\epsilon_i x_r + (1-\epsilon_i) x_f`, :math:`\epsilon_i \sim U[0, 1]` per sample
    (the points :math:`\hat x` of Gulrajani et al. 2017); :func:`fastreg.ops.random_interpolate`."""
    return fused_random_interpolate(x_real, x_fake, generator)


# --- shared steps --------------------------------------------------------------------------------

def check_penalty_grad(penalty_grad: str, who: str) -> str:
    """``penalty_grad`` if it is one of :data:`PENALTY_GRADS`, else ValueError naming it."""
    if penalty_grad not in PENALTY_GRADS:
        raise ValueError(f"{who}: penalty_grad must be one of {', '.join(PENALTY_GRADS)}, got {penalty_grad!r}")
    return penalty_grad


def _requiring_grad(x: torch.Tensor) -> torch.Tensor:
    return x if x.requires_grad else x.detach().requires_grad_()


def couples_batch(D) -> bool | None:
    """Whether D's output for one sample depends on the other samples of its batch: a batch-norm layer
    in training mode, or any submodule that says so with a true ``couples_batch`` attribute (e.g. a
    minibatch-statistics layer). None for a D that is not an ``nn.Module`` (it cannot be inspected)."""
    if not isinstance(D, nn.Module):
        return None
    return any((isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training) or getattr(m, "couples_batch", False)
               is True for m in D.modules())


def resolve_forward(D, forward: str, who: str = "roth_penalty") -> str:
    """``forward`` (auto, joint, separate) as joint or separate for D; joint on a batch-coupled D is refused.

    ``auto`` is ``separate`` when :func:`couples_batch` (per-batch statistics, as Roth et al.'s code
    runs D on the real and the fake batch in separate calls) or when D cannot be inspected (a plain
    function), and ``joint`` otherwise (one call on ``cat([x_real, x_fake])``: the same numbers, one
    forward instead of two).
    """
    if forward not in FORWARD_MODES:
        raise ValueError(f"{who}: forward must be one of {', '.join(FORWARD_MODES)}, got {forward!r}")
    coupled = couples_batch(D)
    if forward == "auto":
        return "joint" if coupled is False else "separate"
    if forward == "joint" and coupled:
        raise ValueError(f"{who}: forward='joint' runs D once on cat([x_real, x_fake]), but D couples the samples "
                         "of a batch (batch norm in training mode): the mixed batch's statistics differ from the "
                         "pure batches D sees elsewhere, and training degenerates. Use forward='separate' (or "
                         "'auto'), or a D without batch-coupling layers")
    return forward


def _warn_on_batch_norm(D, who: str) -> None:
    if couples_batch(D):  # None (a plain function, not inspectable) does not warn
        warnings.warn(f"fastreg.regularizers.{who}: D has BatchNorm layers in training mode; they couple the "
                      "samples of a batch of interpolates, which invalidates WGAN-GP's per-sample penalty "
                      "(Gulrajani et al. 2017). Build the critic without batch norm, or with layer norm "
                      "(DCGANDiscriminator(norm='layer')).", stacklevel=3)


def _refuse_active_dropout(D, who: str) -> None:
    """ValueError naming the module when D has dropout in training mode: the finite difference of two forwards
    with different random masks is no derivative (on a dropout D its 'gradient norm' came out near 4e4, not 1)."""
    if not isinstance(D, nn.Module):
        return
    for name, m in D.named_modules():
        if isinstance(m, nn.modules.dropout._DropoutNd) and m.training and m.p > 0:
            raise ValueError(f"{who}: penalty_grad='finite-difference' needs a deterministic D, but D.{name} is "
                             f"{type(m).__name__}(p={m.p}) in training mode: two forwards draw different masks, and "
                             f"their difference is not a derivative. Use penalty_grad='exact', or a D without "
                             f"active dropout")


# The modules whose two forwards on the same input agreed (checked once per module, weakly held).
_DETERMINISTIC: "weakref.WeakSet[nn.Module]" = weakref.WeakSet()
PROBE_ROWS = 2          # rows of the determinism probe (two, so that batch norm in training mode accepts them)
PROBE_TOLERANCE = 1e-4  # relative: larger differences between the two probe forwards are randomness, not rounding


def _compiled(D: nn.Module) -> bool:
    return getattr(D, "_compiled_call_impl", None) is not None or type(D).__name__ == "OptimizedModule"


def _refuse_random_forward(D, x: torch.Tensor, who: str) -> None:
    """ValueError when two forwards of D on the same rows differ: randomness inside ``forward`` that no module
    shows (``F.dropout(..., training=True)``, noise drawn in ``forward``), which :func:`_refuse_active_dropout`
    cannot see. Checked once per module, on its first finite-difference penalty: two forwards of
    :data:`PROBE_ROWS` rows without grad, the RNG forked and batch-norm statistics restored, so training is
    unchanged. Not checked: a compiled D (the probe's other shape and grad mode would recompile it), and while
    compiling or capturing a CUDA graph."""
    if not isinstance(D, nn.Module) or D in _DETERMINISTIC or _compiled(D) or torch.compiler.is_compiling() \
            or (x.is_cuda and torch.cuda.is_current_stream_capturing()) or x.shape[0] < PROBE_ROWS:
        return
    probe = x[:PROBE_ROWS].detach()
    buffers = batch_norm_buffers(D)
    saved = [b.clone() for b in buffers]
    with torch.no_grad(), torch.random.fork_rng(devices=[x.device] if x.is_cuda else []):
        first, second = D(probe), D(probe)
        for b, value in zip(buffers, saved):
            b.data.copy_(value)
    if not (isinstance(first, torch.Tensor) and isinstance(second, torch.Tensor)):
        return  # the logits check names what D returned
    scale = first.abs().max().clamp_min(1e-12)
    difference = (first - second).abs().max()
    if difference > PROBE_TOLERANCE * scale:
        raise ValueError(f"{who}: penalty_grad='finite-difference' needs a deterministic D, but two forwards of D "
                         f"on the same {len(probe)} rows differ by {difference.item():.3g} (largest logit "
                         f"{scale.item():.3g}): D draws random numbers in forward (functional dropout "
                         f"F.dropout(..., training=True), noise). Use penalty_grad='exact', or make forward "
                         f"deterministic in training (dropout as an nn.Dropout module switched off by .eval())")
    _DETERMINISTIC.add(D)


def _logits(D: Discriminator, x: torch.Tensor, who: str) -> torch.Tensor:
    v = D(x)
    if not isinstance(v, torch.Tensor) or v.dim() not in (1, 2) or v.shape[0] != x.shape[0] \
            or (v.dim() == 2 and v.shape[1] != 1):  # [B/2, 2] has B entries too, but not one per sample
        got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
        raise ValueError(f"{who}: D must return one logit per sample ([B] or [B, 1] with B = {x.shape[0]}), got {got}")
    return v.reshape(x.shape[0])


def _input_gradients(vs: tuple, xs: tuple, scaler) -> tuple:
    r""":math:`\nabla_{x_k} \sum_i v_{k,i}` for separate forwards ``v_k = D(x_k)``, in one autograd call."""
    total = sum(v.sum() for v in vs)
    if scaler is not None and scaler.is_enabled():
        grads = torch.autograd.grad(scaler.scale(total), xs, create_graph=True)
        return tuple(g * (1.0 / scaler.get_scale()) for g in grads)
    return torch.autograd.grad(total, xs, create_graph=True)


def _penalty(g: torch.Tensor, v: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
    """The fused op in float32 or wider, outside autocast."""
    dtype = torch.promote_types(g.dtype, torch.float32)
    with torch.autocast(device_type=g.device.type, enabled=False):
        return grad_penalty(g.to(dtype), None if v is None else v.to(dtype), **kwargs)


def _penalized(D: Discriminator, xs: tuple, vs: tuple, penalty: Callable[[list, list], torch.Tensor], scaler,
               penalty_grad: str, who: str) -> torch.Tensor:
    """``penalty(gs, vs)`` on the input gradients ``gs`` of the logits ``vs = D(xs)``: differentiated twice
    (``exact``) or by :func:`fastreg.regularizers.finite_difference.finite_difference_penalty`
    (``finite-difference``): the one place that chooses how the penalty's parameter gradient is taken."""
    if check_penalty_grad(penalty_grad, who) == "exact":
        return penalty(list(_input_gradients(vs, xs, scaler)), list(vs))
    _refuse_active_dropout(D, who)
    _refuse_random_forward(D, xs[0], who)
    gs = first_order_input_gradients(vs, xs, scaler)
    return finite_difference_penalty(lambda x: _logits(D, x, who), D, xs, vs, gs, penalty, bool(couples_batch(D)))


# --- Roth et al. 2017 ---------------------------------------------------------------------------

def _roth_form(divergence: str) -> tuple[str, str | None]:
    if divergence in ("js", "gan", "ns", "bgan"):
        return "js", None
    for prefix in ("fgan:", "f:"):
        if isinstance(divergence, str) and divergence.startswith(prefix) and divergence[len(prefix):] in DIVERGENCES:
            return "f", divergence[len(prefix):]
    raise ValueError(f"roth_penalty: unknown divergence {divergence!r}; expected 'js' (or the variants gan, ns, "
                     f"bgan) or 'fgan:<div>' with div in {', '.join(DIVERGENCES)}")


def roth_penalty(D: Discriminator, x_real: torch.Tensor, x_fake: torch.Tensor, divergence: str = "js", *,
                 forward: str = "auto", scaler=None, penalty_grad: str = "exact") -> Penalty:
    r"""Roth, Lucchi, Nowozin, Hofmann 2017, "Stabilizing Training of GANs through Regularization".

    D's logits on both batches (inputs requiring grad), :math:`g = \nabla_x v` with
    ``create_graph=True``, then the fused op. ``divergence``:

    - ``"js"`` (also accepted: the variant names ``gan``, ``ns``, ``bgan``), the symmetric JS form
      of the authors' code,
      :math:`\Omega_{JS} = E_P[(1-\sigma(v))^2\lVert g\rVert^2] + E_Q[\sigma(v)^2\lVert g\rVert^2]`;
    - ``"fgan:<div>"`` (or ``"f:<div>"``), :math:`\Omega_f = E_Q[w_f(v)\lVert g\rVert^2]` with
      :math:`w_f` of docs/design.md section 4 (:mod:`fastreg.divergences`).

    ``forward``: ``"separate"`` calls D on ``x_real`` and on ``x_fake`` (per-batch statistics in a
    batch-norm D, as the authors' code does, and as the G step and an unregularized D step see D);
    ``"joint"`` calls it once on ``cat([x_real, x_fake])`` (faster; only valid when D has no
    batch-coupling layer, else ValueError naming ``forward``); ``"auto"`` picks separate exactly
    when D couples its batch (:func:`couples_batch`). Without such layers both give the same numbers.

    Scaled as in the authors' code (the sum of the real-batch and fake-batch means), so the
    paper's :math:`\gamma` (2.0 annealed by :class:`fastreg.schedules.ExponentialAnneal`, or 0.1
    constant) carry over: the D loss adds :math:`(\gamma/2)\,\Omega`. Nothing is stop-gradiented:
    the weights :math:`\sigma(v)` are differentiated too. The batches may differ in size.

    Returns ``(penalty, v_real, v_fake)``: reuse the logits for the main D loss, e.g.
    ``losses.d_loss("ns", v_real, v_fake) + gamma / 2 * penalty``, with no further D forward.
    ``penalty_grad``: ``"exact"`` or ``"finite-difference"`` (module docstring).
    """
    form, div = _roth_form(divergence)
    mode = resolve_forward(D, forward)
    check_penalty_grad(penalty_grad, "roth_penalty")
    n_real, same_size = x_real.shape[0], x_real.shape[0] == x_fake.shape[0]
    if mode == "joint":
        xs = (_requiring_grad(torch.cat([x_real, x_fake])),)
        vs = (_logits(D, xs[0], "roth_penalty"),)
        v_real, v_fake = vs[0][:n_real], vs[0][n_real:]

        def split(gs, vs):  # (g_real, v_real, g_fake, v_fake) of the joint rows
            return gs[0][:n_real], vs[0][:n_real], gs[0][n_real:], vs[0][n_real:]
    else:
        xs = (_requiring_grad(x_real), _requiring_grad(x_fake))
        vs = v_real, v_fake = _logits(D, xs[0], "roth_penalty"), _logits(D, xs[1], "roth_penalty")

        def split(gs, vs):
            return gs[0], vs[0], gs[1], vs[1]

    def omega(gs, vs):
        g_real, v_r, g_fake, v_f = split(gs, vs)
        if form == "f":
            return _penalty(g_fake, v_f, weight=f"f:{div}")
        if mode == "joint" and same_size:  # mean over 2B rows, times 2: one op call
            return 2 * _penalty(gs[0], vs[0], weight="roth_js", num_real=n_real)
        # E_P[...] + E_Q[...]: each batch's mean, so the batches may differ in size
        return (_penalty(g_real, v_r, weight="roth_js", num_real=n_real)
                + _penalty(g_fake, v_f, weight="roth_js", num_real=0))

    return Penalty(_penalized(D, xs, vs, omega, scaler, penalty_grad, "roth_penalty"), v_real, v_fake)


# --- WGAN-GP ------------------------------------------------------------------------------------

def wgan_gp_penalty(D: Discriminator, x_real: torch.Tensor, x_fake: torch.Tensor, *, one_sided: bool = False,
                    target: float = 1.0, generator: torch.Generator | None = None, scaler=None,
                    penalty_grad: str = "exact") -> Penalty:
    r"""WGAN-GP's penalty (Gulrajani et al. 2017, "Improved Training of Wasserstein GANs").

    :math:`E_{\hat x}[(\lVert\nabla_x v(\hat x)\rVert - t)^2]` on :math:`\hat x = \epsilon x_r +
    (1-\epsilon) x_f`, :math:`\epsilon \sim U[0,1]` per sample (:func:`random_interpolate`), or the
    one-sided :math:`E[\max(0, \lVert\nabla v\rVert - t)^2]`; :math:`t` = ``target`` = 1. The D loss
    adds :math:`\lambda` times it, :math:`\lambda` = 10 (the ``gp`` row). D runs on the interpolates only,
    so ``v_real`` and ``v_fake`` of the result are None. ``penalty_grad``: ``"exact"`` or
    ``"finite-difference"`` (module docstring).
    """
    check_penalty_grad(penalty_grad, "wgan_gp_penalty")
    _warn_on_batch_norm(D, "wgan_gp_penalty")
    x = _requiring_grad(random_interpolate(x_real, x_fake, generator))
    v = _logits(D, x, "wgan_gp_penalty")
    norm = "gp_one_sided" if one_sided else "gp"
    return Penalty(_penalized(D, (x,), (v,), lambda gs, vs: _penalty(gs[0], norm=norm, target=target), scaler,
                              penalty_grad, "wgan_gp_penalty"), None, None)


def gradient_penalty(D: Discriminator, x_real: torch.Tensor, x_fake: torch.Tensor, **options) -> torch.Tensor:
    """Deprecated name of :func:`wgan_gp_penalty` (removed in the next release); returns the bare penalty
    tensor as it always did."""
    warnings.warn("fastreg.regularizers.gradient_penalty is deprecated: use wgan_gp_penalty(...).penalty",
                  DeprecationWarning, stacklevel=2)
    return wgan_gp_penalty(D, x_real, x_fake, **options).penalty


# --- R1 and R2 -----------------------------------------------------------------------------------

def _squared_norm_penalty(D: Discriminator, x: torch.Tensor, who: str, scaler, penalty_grad: str):
    check_penalty_grad(penalty_grad, who)
    x = _requiring_grad(x)
    v = _logits(D, x, who)
    return _penalized(D, (x,), (v,), lambda gs, vs: _penalty(gs[0], norm="sq"), scaler, penalty_grad, who), v


def r1_penalty(D: Discriminator, x_real: torch.Tensor, *, scaler=None, penalty_grad: str = "exact") -> Penalty:
    r"""R1 of Mescheder, Geiger, Nowozin 2018, "Which Training Methods for GANs do actually Converge?":
    :math:`E_P[\lVert\nabla_x v\rVert^2]` on real data. The D loss adds :math:`(\gamma/2)` times it,
    :math:`\gamma` = 10 (the ``r1`` row). Returns ``Penalty(penalty, v_real, None)``. ``penalty_grad``:
    ``"exact"`` or ``"finite-difference"`` (module docstring)."""
    penalty, v_real = _squared_norm_penalty(D, x_real, "r1_penalty", scaler, penalty_grad)
    return Penalty(penalty, v_real, None)


def r2_penalty(D: Discriminator, x_fake: torch.Tensor, *, scaler=None, penalty_grad: str = "exact") -> Penalty:
    r"""R2 of Mescheder, Geiger, Nowozin 2018: :math:`E_Q[\lVert\nabla_x v\rVert^2]` on generated
    data; the D loss adds :math:`(\gamma/2)` times it. Returns ``Penalty(penalty, None, v_fake)``.
    ``penalty_grad`` as r1's."""
    penalty, v_fake = _squared_norm_penalty(D, x_fake, "r2_penalty", scaler, penalty_grad)
    return Penalty(penalty, None, v_fake)
