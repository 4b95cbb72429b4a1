r"""Discriminator and generator losses of every GAN variant fastreg runs (docs/design.md section 3).

Both entry points take logits (``D``'s output with no nonlinearity) and
return batch means, to be minimized:

- :func:`d_loss` ``(variant, v_real, v_fake, **options)``
- :func:`g_loss` ``(variant, v_fake, **options)``

Variants: ``gan`` (minimax, Goodfellow et al. 2014), ``ns`` (non-saturating,
Goodfellow et al. 2014), ``lsgan`` (Mao et al. 2017), ``wgan`` (Arjovsky et al.
2017), ``wgan-gp`` (Gulrajani et al. 2017), ``fgan:<div>`` (Nowozin et al.
2016, every divergence of :mod:`fastreg.divergences`), ``bgan`` (Hjelm et al.
2018) and ``vral`` (Grewal, Hjelm, Bengio 2018). Real and fake terms are
averaged over their own batches, so the two batches may differ in size.

:func:`lens_loss` is the lens loss of Tempered GANs (Sajjadi et al. 2018), and
:func:`vral_meta_loss` the meta-discriminators' loss of VRAL.

Every form is written with softplus / log-sigmoid, so no ``log(1 + exp(v))``
or ``log(1 - sigmoid(v))`` overflows for large ``|v|``. Penalties and add-ons
(Roth's regularizer, gradient penalties, weight clipping) live in
:mod:`fastreg.regularizers`.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .divergences import DIVERGENCES, get_divergence

BASE_VARIANTS = ("gan", "ns", "lsgan", "wgan", "wgan-gp", "bgan", "vral")
LSGAN_DEFAULTS = {"a": 0.0, "b": 1.0, "c": 1.0}
VRAL_MU_REAL = 1.0

Meta = Callable[[torch.Tensor], torch.Tensor]


def available() -> list[str]:
    """Every variant name :func:`d_loss` and :func:`g_loss` accept."""
    return list(BASE_VARIANTS) + [f"fgan:{d}" for d in DIVERGENCES]


def parse_variant(variant: str) -> tuple[str, str | None]:
    """Split a variant name into (base, divergence): ``"fgan:kl"`` -> ``("fgan", "kl")``.

    Raises ValueError naming ``variant`` for unknown names.
    """
    if isinstance(variant, str) and variant.startswith("fgan:"):
        div = variant[len("fgan:"):]
        if div not in DIVERGENCES:
            raise ValueError(f"unknown variant {variant!r}: divergence {div!r} is not one of "
                             f"{', '.join(DIVERGENCES)}")
        return "fgan", div
    if variant in BASE_VARIANTS:
        return variant, None
    raise ValueError(f"unknown variant {variant!r}; expected one of {', '.join(BASE_VARIANTS)} "
                     "or 'fgan:<div>'")


def _check_options(variant: str, options: dict, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        expected = ", ".join(allowed) if allowed else "none"
        raise ValueError(f"unknown option(s) {', '.join(map(repr, unknown))} for variant {variant!r}; "
                         f"accepted: {expected}")


def _check_logits(name: str, v) -> None:
    if not isinstance(v, torch.Tensor) or not v.is_floating_point() or v.numel() == 0:
        raise ValueError(f"{name} must be a non-empty floating-point tensor of logits")


# --- discriminator losses ----------------------------------------------------------------------

def d_loss(variant: str, v_real: torch.Tensor, v_fake: torch.Tensor, **options) -> torch.Tensor:
    r"""The discriminator loss of ``variant`` from real and fake logits (a scalar to minimize).

    - ``gan``, ``ns``, ``bgan``: :math:`E_P[\mathrm{softplus}(-v)] + E_Q[\mathrm{softplus}(v)]`,
      the cross-entropy of Goodfellow et al. 2014 (BGAN, Hjelm et al. 2018, trains D the same way).
    - ``lsgan``: :math:`\tfrac12 E_P[(v-b)^2] + \tfrac12 E_Q[(v-a)^2]`, options ``a=0``, ``b=1``
      (Mao et al. 2017).
    - ``wgan``, ``wgan-gp``: :math:`E_Q[v] - E_P[v]` (Arjovsky et al. 2017; Gulrajani et al. 2017
      add :math:`\lambda\,E(\lVert\nabla v(\hat x)\rVert-1)^2`, see
      :func:`fastreg.regularizers.wgan_gp_penalty`).
    - ``fgan:<div>``: :math:`-E_P[g_f(v)] + E_Q[f^*(g_f(v))]` (Nowozin et al. 2016; table in
      docs/design.md section 4).
    - ``vral``: the classifier loss of Grewal, Hjelm, Bengio 2018,
      :math:`E_Q[\mathrm{softplus}(-F(v))] + E_P[\mathrm{softplus}(-R(v))]`, with the
      meta-discriminators passed as options ``meta_fake=F`` and ``meta_real=R`` (callables
      mapping logits ``[B]`` to meta-logits ``[B]``, e.g.
      :class:`fastreg.models.MetaDiscriminator`).
    """
    base, div = parse_variant(variant)
    _check_logits("v_real", v_real)
    _check_logits("v_fake", v_fake)
    if base in ("gan", "ns", "bgan"):
        _check_options(variant, options, ())
        return F.softplus(-v_real).mean() + F.softplus(v_fake).mean()
    if base == "lsgan":
        _check_options(variant, options, ("a", "b", "c"))
        a, b = (options.get(k, LSGAN_DEFAULTS[k]) for k in ("a", "b"))
        return 0.5 * (v_real - b).square().mean() + 0.5 * (v_fake - a).square().mean()
    if base in ("wgan", "wgan-gp"):
        _check_options(variant, options, ())
        return v_fake.mean() - v_real.mean()
    if base == "fgan":
        _check_options(variant, options, ())
        d = get_divergence(div)
        return -d.activation(v_real).mean() + d.conjugate(v_fake).mean()
    _check_options(variant, options, ("meta_real", "meta_fake", "mu_real"))
    return _vral_classifier_loss(v_real, v_fake, options)


def _vral_classifier_loss(v_real: torch.Tensor, v_fake: torch.Tensor, options: dict) -> torch.Tensor:
    meta_real, meta_fake = options.get("meta_real"), options.get("meta_fake")
    for name, meta in (("meta_real", meta_real), ("meta_fake", meta_fake)):
        if not callable(meta):
            raise ValueError(f"variant 'vral' needs option {name}: a callable meta-discriminator on the logits")
    return F.softplus(-meta_fake(v_fake)).mean() + F.softplus(-meta_real(v_real)).mean()


# --- generator losses --------------------------------------------------------------------------

def g_loss(variant: str, v_fake: torch.Tensor, **options) -> torch.Tensor:
    r"""The generator loss of ``variant`` from the logits of generated samples (a scalar to minimize).

    - ``gan``: :math:`-E_Q[\mathrm{softplus}(v)] = E_Q[\log(1 - D(x))]`, the minimax loss of
      Goodfellow et al. 2014.
    - ``ns``: :math:`E_Q[\mathrm{softplus}(-v)] = -E_Q[\log D(x)]`, the non-saturating loss of
      Goodfellow et al. 2014.
    - ``lsgan``: :math:`\tfrac12 E_Q[(v-c)^2]`, option ``c=1`` (Mao et al. 2017; ``a``, ``b``
      are accepted and ignored, so one options dict serves both losses).
    - ``wgan``, ``wgan-gp``: :math:`-E_Q[v]` (Arjovsky et al. 2017; Gulrajani et al. 2017).
    - ``fgan:<div>``: :math:`-E_Q[g_f(v)]`, Nowozin et al. 2016's alternative G objective.
    - ``bgan``: :math:`\tfrac12 E_Q[v^2] = \tfrac12 E_Q[(\log D - \log(1-D))^2]`, the
      boundary-seeking loss of Hjelm et al. 2018.
    - ``vral``: :math:`E_Q[(v - \mu_r)^2]`, option ``mu_real=1`` (Grewal, Hjelm, Bengio 2018;
      ``meta_real``/``meta_fake`` are accepted and ignored).
    """
    base, div = parse_variant(variant)
    _check_logits("v_fake", v_fake)
    if base == "gan":
        _check_options(variant, options, ())
        return -F.softplus(v_fake).mean()
    if base == "ns":
        _check_options(variant, options, ())
        return F.softplus(-v_fake).mean()
    if base == "lsgan":
        _check_options(variant, options, ("a", "b", "c"))
        return 0.5 * (v_fake - options.get("c", LSGAN_DEFAULTS["c"])).square().mean()
    if base in ("wgan", "wgan-gp"):
        _check_options(variant, options, ())
        return -v_fake.mean()
    if base == "fgan":
        _check_options(variant, options, ())
        return -get_divergence(div).activation(v_fake).mean()
    if base == "bgan":
        _check_options(variant, options, ())
        return 0.5 * v_fake.square().mean()
    _check_options(variant, options, ("meta_real", "meta_fake", "mu_real"))
    return (v_fake - options.get("mu_real", VRAL_MU_REAL)).square().mean()


# --- VRAL meta-discriminators ------------------------------------------------------------------

def vral_meta_loss(meta: Meta, y: torch.Tensor, mu: float, *,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Loss of one VRAL meta-discriminator (Grewal, Hjelm, Bengio 2018).

    The meta-discriminator ``meta`` learns to tell samples :math:`u \sim N(\mu, 1)` (its
    "real" data) from the classifier's logits ``y`` (its "fake" data):

    .. math:: E_u[\mathrm{softplus}(-M(u))] + E_y[\mathrm{softplus}(M(y))].

    Use ``F`` with ``y = y_f`` (logits of generated samples) and :math:`\mu = \mu_f` (0; -1 for
    CelebA/LSUN), ``R`` with ``y = y_r`` and :math:`\mu = \mu_r` (1). Pass ``y.detach()`` when
    only the meta-discriminator should learn from this loss. ``u`` has ``y``'s shape and is drawn
    from ``generator`` (the default generator if None).
    """
    _check_logits("y", y)
    if not callable(meta):
        raise ValueError("meta must be a callable meta-discriminator on the logits")
    u = mu + torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
    return vral_meta_loss_from_logits(meta(u), meta(y))


def vral_meta_loss_from_logits(m_prior: torch.Tensor, m_logits: torch.Tensor) -> torch.Tensor:
    r""":math:`E[\mathrm{softplus}(-m_{prior})] + E[\mathrm{softplus}(m_{logits})]`, the meta loss of
    :func:`vral_meta_loss` given the meta-logits on the prior samples and on the classifier's logits
    (Grewal, Hjelm, Bengio 2018)."""
    return F.softplus(-m_prior).mean() + F.softplus(m_logits).mean()


# --- Tempered GAN lens -------------------------------------------------------------------------

LENS_ADVERSARIAL = {
    "gan": lambda v: F.softplus(v), "ns": lambda v: F.softplus(v), "bgan": lambda v: F.softplus(v),
    "lsgan": lambda v: v.square(), "wgan": lambda v: v, "wgan-gp": lambda v: v,
}


def lens_loss(variant: str, v_lensed: torch.Tensor, x: torch.Tensor, x_lensed: torch.Tensor,
              lam: float) -> torch.Tensor:
    r"""The lens loss of Sajjadi, Parascandolo, Mehrjou, Schölkopf 2018, "Tempered Adversarial Networks":

    .. math:: L_L = \lambda_t\,E[L^A_L(v_L)] + E\lVert x - L(x)\rVert^2

    with ``v_lensed`` :math:`= v_L` = D's logits on the lensed real batch ``x_lensed`` = L(x) and
    :math:`L^A_L` the negated D objective on lensed data (docs/design.md section 5): ``gan``, ``ns``,
    ``bgan``: :math:`\mathrm{softplus}(v_L) = -\log(1 - D(L(x)))`; ``lsgan``: :math:`v_L^2`;
    ``wgan``, ``wgan-gp``: :math:`v_L`. The squared norm is per sample (summed over its elements),
    averaged over the batch. ``lam`` is :math:`\lambda_t` of :class:`fastreg.schedules.LensSchedule`.
    """
    base, _ = parse_variant(variant)
    if base not in LENS_ADVERSARIAL:
        raise ValueError(f"lens_loss: variant {variant!r} has no lens objective; expected one of "
                         f"{', '.join(LENS_ADVERSARIAL)}")
    _check_logits("v_lensed", v_lensed)
    if x.shape != x_lensed.shape:
        raise ValueError(f"lens_loss: x_lensed has shape {tuple(x_lensed.shape)} but x has {tuple(x.shape)}")
    distortion = (x - x_lensed).reshape(x.shape[0], -1).square().sum(dim=1).mean()
    return lam * LENS_ADVERSARIAL[base](v_lensed).mean() + distortion
