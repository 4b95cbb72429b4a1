r"""Discriminator regularizers and add-ons (docs/design.md section 3).

- :func:`roth_penalty`: Roth, Lucchi, Nowozin, Hofmann 2017's regularizer (symmetric JS form
  for ``gan``/``ns``/``bgan``, :math:`\Omega_f` for ``fgan:<div>``), one D forward shared with
  the main loss.
- :func:`gradient_penalty`: WGAN-GP, two-sided and one-sided (Gulrajani et al. 2017).
- :func:`r1_penalty`, :func:`r2_penalty`: Mescheder, Geiger, Nowozin 2018.
- :func:`instance_noise`: Arjovsky & Bottou 2017's Gaussian instance noise.
- :func:`clip_weights_`: WGAN weight clipping (Arjovsky, Chintala, Bottou 2017).
- :class:`LazyRegularization`: apply a penalty every k-th D step with weight times k
  (Karras et al. 2020, StyleGAN2).

Every penalty returns the *unweighted* penalty; the caller adds it to the D loss with its
weight (:math:`\gamma/2` for Roth, R1, R2; :math:`\lambda` for WGAN-GP). The norms go through
the fused op :func:`fastreg.ops.grad_penalty`, differentiable twice, so the D loss backpropagates
into D's parameters through :math:`\nabla_x v`.

Inputs are used as given (nothing is detached); one that does not require grad is replaced by a
detached alias that does. Pass detached fakes (``G(z).detach()``) for a D step.

Mixed precision follows PyTorch's AMP recipe for gradient penalties: with a ``scaler``
(:class:`torch.amp.GradScaler`) the logits are scaled before ``autograd.grad`` and the input
gradient unscaled after it; under ``torch.autocast`` the penalty itself is computed in float32
(float64 stays float64) with autocast off.
"""

from __future__ import annotations

import warnings
from typing import Callable, NamedTuple

import torch
import torch.nn as nn

from .divergences import DIVERGENCES
from .ops import gaussian_noise, grad_penalty
from .ops import random_interpolate as fused_random_interpolate

ROTH_GAMMA = 0.1     # constant gamma of Roth et al. 2017
GP_LAMBDA = 10.0     # lambda of Gulrajani et al. 2017
R1_GAMMA = 10.0      # gamma of Mescheder et al. 2018's code
WGAN_CLIP = 0.01     # weight bound of Arjovsky et al. 2017

Discriminator = Callable[[torch.Tensor], torch.Tensor]


class RothPenalty(NamedTuple):
    """The penalty :math:`\\Omega` and the logits of the forward that computed it."""

    penalty: torch.Tensor
    v_real: torch.Tensor
    v_fake: torch.Tensor


class PenaltyAndLogits(NamedTuple):
    """A penalty and the logits of the forward that computed it."""

    penalty: torch.Tensor
    logits: torch.Tensor


# --- the random ops: fastreg's fused kernels ------------------------------------------------------

def instance_noise(x: torch.Tensor, sigma, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Gaussian instance noise :math:`x + \sigma\,\xi`, :math:`\xi \sim N(0, I)` (Arjovsky & Bottou 2017,
    "Towards Principled Methods for Training GANs": convolve both densities with a Gaussian).

    Apply it to real *and* fake inputs of D; the gradient w.r.t. ``x`` is the identity, so G's
    gradient flows through the noisy fake. ``sigma`` is a float or a ``[B]`` tensor (one per
    sample). A float ``sigma == 0`` returns ``x`` itself and draws nothing (the end of an
    annealing schedule). Otherwise this is :func:`fastreg.ops.gaussian_noise` (in-kernel Philox).
    """
    if not isinstance(sigma, torch.Tensor) and sigma == 0:
        return x
    return gaussian_noise(x, sigma, generator)


def random_interpolate(x_real: torch.Tensor, x_fake: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    r""":math:`\epsilon_i x_r + (1-\epsilon_i) x_f`, :math:`\epsilon_i \sim U[0, 1]` per sample
    (the points :math:`\hat x` of Gulrajani et al. 2017); :func:`fastreg.ops.random_interpolate`."""
    return fused_random_interpolate(x_real, x_fake, generator)


# --- shared steps --------------------------------------------------------------------------------

def _requiring_grad(x: torch.Tensor) -> torch.Tensor:
    return x if x.requires_grad else x.detach().requires_grad_()


def _warn_on_batch_norm(D, who: str) -> None:
    if not isinstance(D, nn.Module):
        return
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in D.modules()):
        warnings.warn(f"fastreg.regularizers.{who}: D has BatchNorm layers in training mode; they couple the "
                      "samples of a batch, so the per-sample input gradients the penalty assumes are wrong. "
                      "Build D without batch norm (e.g. DCGANDiscriminator(batch_norm=False)).", stacklevel=3)


def _logits(D: Discriminator, x: torch.Tensor, who: str) -> torch.Tensor:
    v = D(x)
    if not isinstance(v, torch.Tensor) or v.numel() != x.shape[0]:
        got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
        raise ValueError(f"{who}: D must return one logit per sample ([B] or [B, 1] with B = {x.shape[0]}), got {got}")
    return v.reshape(x.shape[0])


def _input_gradient(v: torch.Tensor, x: torch.Tensor, scaler) -> torch.Tensor:
    """:math:`\\nabla_x \\sum_i v_i` with create_graph, scaled/unscaled by ``scaler`` (AMP recipe)."""
    if scaler is not None and scaler.is_enabled():
        (g,) = torch.autograd.grad(scaler.scale(v.sum()), x, create_graph=True)
        return g * (1.0 / scaler.get_scale())
    (g,) = torch.autograd.grad(v.sum(), x, create_graph=True)
    return g


def _penalty(g: torch.Tensor, v: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
    """The fused op in float32 or wider, outside autocast."""
    dtype = torch.promote_types(g.dtype, torch.float32)
    with torch.autocast(device_type=g.device.type, enabled=False):
        return grad_penalty(g.to(dtype), None if v is None else v.to(dtype), **kwargs)


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
                 scaler=None) -> RothPenalty:
    r"""Roth, Lucchi, Nowozin, Hofmann 2017, "Stabilizing Training of GANs through Regularization".

    One D forward on ``cat([x_real, x_fake])`` (inputs requiring grad), :math:`g = \nabla_x v` with
    ``create_graph=True``, then the fused op. ``divergence``:

    - ``"js"`` (also accepted: the variant names ``gan``, ``ns``, ``bgan``), the symmetric JS form
      of the authors' code,
      :math:`\Omega_{JS} = E_P[(1-\sigma(v))^2\lVert g\rVert^2] + E_Q[\sigma(v)^2\lVert g\rVert^2]`;
    - ``"fgan:<div>"`` (or ``"f:<div>"``), :math:`\Omega_f = E_Q[w_f(v)\lVert g\rVert^2]` with
      :math:`w_f` of docs/design.md section 4.

    Scaled as in the authors' code (the sum of the real-batch and fake-batch means), so the
    paper's :math:`\gamma` (2.0 annealed by :class:`fastreg.schedules.ExponentialAnneal`, or 0.1
    constant) carry over: the D loss adds :math:`(\gamma/2)\,\Omega`. Nothing is stop-gradiented:
    the weights :math:`\sigma(v)` are differentiated too. The batches may differ in size.

    Returns ``(penalty, v_real, v_fake)``: reuse the logits for the main D loss, e.g.
    ``losses.d_loss("ns", v_real, v_fake) + gamma / 2 * penalty``, with no second D forward.
    """
    form, div = _roth_form(divergence)
    _warn_on_batch_norm(D, "roth_penalty")
    n_real = x_real.shape[0]
    x = _requiring_grad(torch.cat([x_real, x_fake]))
    v = _logits(D, x, "roth_penalty")
    g = _input_gradient(v, x, scaler)
    if form == "f":
        omega = _penalty(g[n_real:], v[n_real:], weight=f"f:{div}")
    elif n_real == x_fake.shape[0]:
        omega = 2 * _penalty(g, v, weight="roth_js", num_real=n_real)  # mean over 2B rows, times 2
    else:
        omega = (_penalty(g[:n_real], v[:n_real], weight="roth_js", num_real=n_real)
                 + _penalty(g[n_real:], v[n_real:], weight="roth_js", num_real=0))
    return RothPenalty(omega, v[:n_real], v[n_real:])


# --- gradient penalties ------------------------------------------------------------------------

def gradient_penalty(D: Discriminator, x_real: torch.Tensor, x_fake: torch.Tensor, *, one_sided: bool = False,
                     target: float = 1.0, generator: torch.Generator | None = None, scaler=None) -> torch.Tensor:
    r"""WGAN-GP's penalty (Gulrajani et al. 2017, "Improved Training of Wasserstein GANs").

    :math:`E_{\hat x}[(\lVert\nabla_x v(\hat x)\rVert - t)^2]` on :math:`\hat x = \epsilon x_r +
    (1-\epsilon) x_f`, :math:`\epsilon \sim U[0,1]` per sample (:func:`random_interpolate`), or the
    one-sided :math:`E[\max(0, \lVert\nabla v\rVert - t)^2]`; :math:`t` = ``target`` = 1. The D loss
    adds :math:`\lambda` times it, :math:`\lambda` = 10 (:data:`GP_LAMBDA`).
    """
    _warn_on_batch_norm(D, "gradient_penalty")
    x = _requiring_grad(random_interpolate(x_real, x_fake, generator))
    v = _logits(D, x, "gradient_penalty")
    g = _input_gradient(v, x, scaler)
    return _penalty(g, norm="gp_one_sided" if one_sided else "gp", target=target)


def _squared_norm_penalty(D: Discriminator, x: torch.Tensor, who: str, scaler) -> PenaltyAndLogits:
    _warn_on_batch_norm(D, who)
    x = _requiring_grad(x)
    v = _logits(D, x, who)
    return PenaltyAndLogits(_penalty(_input_gradient(v, x, scaler), norm="sq"), v)


def r1_penalty(D: Discriminator, x_real: torch.Tensor, *, scaler=None) -> PenaltyAndLogits:
    r"""R1 of Mescheder, Geiger, Nowozin 2018, "Which Training Methods for GANs do actually Converge?":
    :math:`E_P[\lVert\nabla_x v\rVert^2]` on real data. The D loss adds :math:`(\gamma/2)` times it,
    :math:`\gamma` = 10 (:data:`R1_GAMMA`). Returns ``(penalty, v_real)`` for the main loss."""
    return _squared_norm_penalty(D, x_real, "r1_penalty", scaler)


def r2_penalty(D: Discriminator, x_fake: torch.Tensor, *, scaler=None) -> PenaltyAndLogits:
    r"""R2 of Mescheder, Geiger, Nowozin 2018: :math:`E_Q[\lVert\nabla_x v\rVert^2]` on generated
    data; the D loss adds :math:`(\gamma/2)` times it. Returns ``(penalty, v_fake)``."""
    return _squared_norm_penalty(D, x_fake, "r2_penalty", scaler)


# --- WGAN weight clipping and lazy regularization ----------------------------------------------

@torch.no_grad()
def clip_weights_(D: nn.Module, bound: float = WGAN_CLIP) -> None:
    """Clamp every parameter of ``D`` to ``[-bound, bound]`` in place, after each D step
    (Arjovsky, Chintala, Bottou 2017, "Wasserstein GAN"; bound 0.01)."""
    if not bound > 0:
        raise ValueError(f"clip_weights_: bound must be > 0, got {bound}")
    for p in D.parameters():
        p.clamp_(-bound, bound)


class LazyRegularization:
    """Apply a penalty only every ``every``-th D step, with its weight multiplied by ``every``
    (lazy regularization, Karras et al. 2020, "Analyzing and Improving the Image Quality of
    StyleGAN"), so its average weight per step is unchanged::

        lazy = LazyRegularization(every=4)
        if lazy.due(step):
            loss = loss + lazy.weight(gamma / 2) * penalty
    """

    def __init__(self, every: int = 1):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"LazyRegularization: every must be an int >= 1, got {every!r}")
        self.every = every

    def due(self, step: int) -> bool:
        """Whether the penalty is applied at D step ``step`` (steps 0, k, 2k, ...)."""
        return step % self.every == 0

    def weight(self, weight: float) -> float:
        """The weight to use on a due step: ``weight * every``."""
        return weight * self.every

    def __call__(self, step: int, weight: float) -> float:
        """``weight * every`` on due steps, else 0."""
        return self.weight(weight) if self.due(step) else 0.0
