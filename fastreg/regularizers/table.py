r"""The discriminator regularizers fastreg trains with, one executable row each: the one place that says what a
regularizer is and does. A row holds its penalty call, its defaults and presets, the variants it applies to,
what a variant implies (``wgan-gp`` carries ``gp``) and its config rules; the trainer's D step, the config, the
CLI help, the schedule builder, the diagnostics, the demo and the experiments ask the row (as
:data:`fastreg.divergences.DIVERGENCES` is asked about divergences) instead of branching on names.

Every row says:

- ``compute``: the penalty call, ``compute(D, x_real, x_fake, options) -> Penalty(penalty, v_real, v_fake)``
  with both logits filled in (the ones the penalty's forward computed, D's plain forward for the others, in
  the order the row gives), so the D loss needs no further forward; :meth:`Regularizer.penalty` is its
  public form. ``options`` (:class:`PenaltyOptions`) carries the variant, Roth's forward mode, the AMP scaler,
  ``penalty_grad`` and the interpolation generator: one place to add an option every penalty can take;
- ``weight``: the default weight, and ``symbol`` its name in the source paper (:math:`\gamma` or
  :math:`\lambda`);
- ``loss_factor``: the D loss adds ``loss_factor * weight * penalty``: :math:`\gamma/2` for the
  squared-norm penalties (Roth, R1, R2, whose papers write :math:`\frac{\gamma}{2}\Omega`),
  :math:`\lambda` for WGAN-GP's;
- ``annealed_start`` / ``anneal_alpha``: the annealed preset, :math:`\gamma_t = \gamma_0\,\alpha^{t/T}`
  (Roth only; ``t`` counts generator iterations, ``T`` their total, and every D step of one iteration
  shares :math:`\gamma_t`, as in the authors' code);
- ``shares_logits``: whether the penalty needs the logits of the main loss's forward (Roth's weights
  :math:`w(v)`), so that the one forward of the D step serves both. Only such a penalty has a choice
  of *forward mode* (``d_forward``): ``joint`` (one call on ``cat([x_real, x_fake])``, valid only when D
  has no batch-coupling layer) or ``separate`` (one call per batch, per-batch statistics: the authors'
  protocol). The others run D once per batch they differentiate anyway;
- ``d_norm``: D's normalization layers by default under this regularizer, from its paper:
  batch norm for the DCGAN D without a penalty (Radford et al.) and with Roth's (the authors' code
  keeps it); none in WGAN-GP's critic (Gulrajani et al.: batch norm invalidates the per-sample
  penalty; layer norm is their replacement, ``d_norm=layer``); none for R1/R2 (Mescheder et al.'s
  discriminators have no normalization layers). The default is written into the run's config, never
  applied silently; the networks themselves know nothing of regularizers;
- ``variants``: the GAN variants it applies to (``"fgan:*"`` stands for every f-GAN divergence,
  ``"*"`` for all but ``except_variants``); ``carried_by``: the variants whose loss brings this penalty
  when ``reg`` is none (``wgan-gp`` brings ``gp``), read only by :func:`in_force`.

The config rules of a regularizer are :func:`check_config`'s. The penalties themselves are in
:mod:`fastreg.regularizers.penalties`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

from .penalties import FORWARD_MODES, Penalty, r1_penalty, r2_penalty, roth_penalty, wgan_gp_penalty
from .subbatch import check_fraction, subbatch_penalty

D_NORMS = ("batch", "layer", "none")
__all__ = ["D_NORMS", "FORWARD_MODES", "PenaltyOptions", "REGULARIZERS", "REGULARIZER_FIELDS", "Regularizer",
           "check_config", "d_norm_help", "in_force", "reg_help", "weight_help"]


class PenaltyOptions(NamedTuple):
    """How a row's penalty is taken (the keyword arguments of :meth:`Regularizer.penalty`)."""

    variant: str = "ns"           # the GAN variant (Roth's penalty takes its form from it)
    forward: str = "auto"         # Roth's forward mode: auto, joint, separate
    scaler: object = None         # torch.amp.GradScaler, or None
    penalty_grad: str = "exact"   # exact or finite-difference
    generator: object = None      # torch.Generator of WGAN-GP's interpolation weights, or None (the default one)
    fraction: float = 1.0         # the sub-batch penalty: the penalty on this fraction of each batch's rows


# --- the penalty calls: each returns the penalty and D's logits on both batches -----------------------

def _roth(D, x_real, x_fake, o: PenaltyOptions) -> Penalty:
    return roth_penalty(D, x_real, x_fake, o.variant, forward=o.forward, scaler=o.scaler, penalty_grad=o.penalty_grad)


def _wgan_gp(one_sided: bool) -> Callable:
    def compute(D, x_real, x_fake, o: PenaltyOptions) -> Penalty:
        v_real, v_fake = D(x_real), D(x_fake)
        penalty = wgan_gp_penalty(D, x_real, x_fake, one_sided=one_sided, generator=o.generator, scaler=o.scaler,
                                  penalty_grad=o.penalty_grad).penalty
        return Penalty(penalty, v_real, v_fake)
    return compute


def _r1(D, x_real, x_fake, o: PenaltyOptions) -> Penalty:
    penalty, v_real, _ = r1_penalty(D, x_real, scaler=o.scaler, penalty_grad=o.penalty_grad)
    return Penalty(penalty, v_real, D(x_fake))


def _r2(D, x_real, x_fake, o: PenaltyOptions) -> Penalty:
    v_real = D(x_real)
    penalty, _, v_fake = r2_penalty(D, x_fake, scaler=o.scaler, penalty_grad=o.penalty_grad)
    return Penalty(penalty, v_real, v_fake)


def _r1_r2(D, x_real, x_fake, o: PenaltyOptions) -> Penalty:
    r1, v_real, _ = r1_penalty(D, x_real, scaler=o.scaler, penalty_grad=o.penalty_grad)
    r2, _, v_fake = r2_penalty(D, x_fake, scaler=o.scaler, penalty_grad=o.penalty_grad)
    return Penalty(r1 + r2, v_real, v_fake)


@dataclass(frozen=True)
class Regularizer:
    """One row of :data:`REGULARIZERS`."""

    name: str
    title: str                 # what it is, with its source (the CLI help of ``reg``)
    compute: Callable | None   # (D, x_real, x_fake, PenaltyOptions) -> Penalty; None for "none"
    weight: float              # default (constant) weight
    symbol: str                # "gamma" or "lambda"
    loss_factor: float         # D loss += loss_factor * weight * penalty
    shares_logits: bool        # needs the main forward's logits (only then joint/separate matters)
    d_norm: str                # default normalization of the DCGAN D under this regularizer
    variants: tuple[str, ...]  # variants it applies to; "*" = every variant not in except_variants
    except_variants: tuple[str, ...] = ()
    carried_by: tuple[str, ...] = ()     # variants that bring this penalty when reg is none
    annealed_start: float | None = None  # gamma_0 of the annealed preset
    anneal_alpha: float | None = None    # alpha of the annealed preset

    @property
    def has_penalty(self) -> bool:
        return self.compute is not None

    def penalty(self, D, x_real, x_fake, *, variant: str = "ns", forward: str = "auto", scaler=None,
                penalty_grad: str = "exact", generator=None, fraction: float = 1.0) -> Penalty:
        """This regularizer's (unweighted) penalty on a real and a fake batch, with D's logits on both:
        ``Penalty(penalty, v_real, v_fake)``; the D loss adds ``loss_weight(gamma) * penalty``. ``fraction`` < 1:
        the sub-batch penalty (:func:`fastreg.regularizers.subbatch.subbatch_penalty`)."""
        if self.compute is None:
            raise ValueError(f"regularizer {self.name!r} has no penalty")
        options = PenaltyOptions(variant, forward, scaler, penalty_grad, generator, check_fraction(fraction))
        if fraction == 1:
            return self.compute(D, x_real, x_fake, options)
        return subbatch_penalty(self.compute, D, x_real, x_fake, options)

    def applies_to(self, variant: str) -> bool:
        if variant in self.except_variants:
            return False
        return "*" in self.variants or variant in self.variants or (
            "fgan:*" in self.variants and variant.startswith("fgan:"))

    def variants_text(self) -> str:
        if "*" in self.variants:
            return "every variant" + (f" but {', '.join(self.except_variants)}" if self.except_variants else "")
        return ", ".join(v.replace("fgan:*", "fgan:<div>") for v in self.variants)

    def loss_weight(self, weight: float) -> float:
        """The factor of the penalty in the D loss for a weight ``weight`` (gamma/2 or lambda)."""
        return self.loss_factor * weight

    def default_weight(self, annealed: bool) -> float:
        return self.annealed_start if annealed and self.annealed_start is not None else self.weight

    def preset(self, annealed: bool = False) -> dict:
        """The config fields of this regularizer at its paper's defaults (annealed: Roth's gamma_0, alpha)."""
        if not self.has_penalty:
            return {"reg": self.name}
        if annealed:
            if self.annealed_start is None:
                raise ValueError(f"regularizer {self.name!r} has no annealed preset")
            return {"reg": self.name, "gamma": self.annealed_start, "gamma_anneal": self.anneal_alpha}
        return {"reg": self.name, "gamma": self.weight}


REGULARIZERS: dict[str, Regularizer] = {r.name: r for r in (
    Regularizer("none", "no gradient penalty", None, 0.0, "gamma", 0.0, False, "batch", ("*",)),
    Regularizer("roth", "Roth, Lucchi, Nowozin, Hofmann 2017: Omega_JS (gan, ns, bgan) or Omega_f (fgan) on the real "
                "and fake batches", _roth, 0.1, "gamma", 0.5, True, "batch", ("gan", "ns", "bgan", "fgan:*"),
                annealed_start=2.0, anneal_alpha=0.01),
    Regularizer("gp", "WGAN-GP, (||grad v|| - 1)^2 on interpolates (Gulrajani et al. 2017)", _wgan_gp(False), 10.0,
                "lambda", 1.0, False, "none", ("*",), except_variants=("wgan",), carried_by=("wgan-gp",)),
    Regularizer("gp1", "one-sided WGAN-GP, max(0, ||grad v|| - 1)^2 on interpolates (Gulrajani et al. 2017)",
                _wgan_gp(True), 10.0, "lambda", 1.0, False, "none", ("*",), except_variants=("wgan",)),
    Regularizer("r1", "R1, ||grad v||^2 on real data (Mescheder, Geiger, Nowozin 2018)", _r1, 10.0, "gamma", 0.5,
                False, "none", ("*",), except_variants=("wgan", "wgan-gp")),
    Regularizer("r2", "R2, ||grad v||^2 on generated data (Mescheder, Geiger, Nowozin 2018)", _r2, 10.0, "gamma", 0.5,
                False, "none", ("*",), except_variants=("wgan", "wgan-gp")),
    Regularizer("r1r2", "R1 + R2, ||grad v||^2 on real plus on generated data (Mescheder et al. 2018's penalties, "
                "paired as in R3GAN, Huang et al. 2024; default gamma R1's)", _r1_r2, 10.0, "gamma", 0.5, False,
                "none", ("*",), except_variants=("wgan", "wgan-gp")),
)}

# Config fields that belong to the regularizer: a like-for-like comparison changes only these.
REGULARIZER_FIELDS = ("reg", "gamma", "gamma_anneal", "reg_every", "reg_fraction", "d_forward")


def in_force(variant: str, reg: str = "none") -> Regularizer:
    """The row whose penalty a run of ``variant`` with ``reg`` trains with: ``reg``'s, or, when ``reg`` is
    none, the row the variant carries (``wgan-gp`` carries ``gp``: Gulrajani et al.'s loss includes it)."""
    if reg == "none":
        for row in REGULARIZERS.values():
            if variant in row.carried_by:
                return row
    return REGULARIZERS[reg]


def check_config(variant: str, reg: str, *, d_forward: str = "auto", gamma_anneal: float | None = None,
                 penalty_grad: str = "exact", model: str = "dcgan", compile: str = "none",
                 reg_fraction: float = 1.0) -> Regularizer:
    """The regularizer rules of a run's config; returns the row in force, or raises ValueError whose message
    starts with the field's name (the config turns it into a ConfigError). ``reg``, ``d_forward`` and
    ``penalty_grad`` must be known names (the config checks them first)."""
    row, chosen = in_force(variant, reg), REGULARIZERS[reg]
    check_fraction(reg_fraction, "reg_fraction")
    if reg_fraction != 1 and not row.has_penalty:
        raise ValueError(f"reg_fraction: {reg_fraction:g} takes the penalty on a sub-batch, but variant {variant!r} "
                         "with reg none has no penalty")
    if variant == "wgan" and chosen.has_penalty:
        raise ValueError("reg: wgan bounds D by weight clipping; for a gradient penalty use variant wgan-gp")
    if not chosen.applies_to(variant):
        carried = in_force(variant)
        note = f"; {variant} carries {carried.name} (reg none)" if carried.has_penalty else ""
        raise ValueError(f"reg: {reg!r} applies to {chosen.variants_text()}, not variant {variant!r}{note}")
    if d_forward != "auto" and not row.shares_logits:
        raise ValueError(f"d_forward: only a penalty that shares the loss's logits (roth) has a forward mode; "
                         f"reg {row.name!r} runs D once per batch it differentiates")
    if gamma_anneal is not None and chosen.annealed_start is None:
        annealed = ", ".join(r.name for r in REGULARIZERS.values() if r.annealed_start is not None)
        raise ValueError(f"gamma_anneal: annealing is Roth's schedule; set reg={annealed}")
    if row.has_penalty and penalty_grad == "exact":  # the exact parameter gradient is a double backward through D
        if model == "transformer":
            raise ValueError("penalty_grad: the transformer D's fused attention (scaled_dot_product_attention's "
                             "flash kernel) has no double backward, which the exact penalty gradient needs; use "
                             "penalty_grad=finite-difference")
        if compile == "forward":
            raise ValueError(f"compile: 'forward' compiles D, but the gradient penalty ({row.name}) with "
                             "penalty_grad=exact differentiates D twice (it backpropagates through the input "
                             "gradient), and torch.compile does not support double backward ('torch.compile with "
                             "aot_autograd does not currently support double backward'); use "
                             "penalty_grad=finite-difference (first-order autograd only), compile=generator (G "
                             "only) or no gradient penalty")
    return row


def reg_help() -> str:
    """The CLI help of ``reg``: every row's name, then what each is."""
    return ("regularizer: " + ", ".join(REGULARIZERS) + " ("
            + "; ".join(f"{r.name}: {r.title}" for r in REGULARIZERS.values() if r.has_penalty) + ")")


def weight_help() -> str:
    """The defaults of every regularizer's weight, for the CLI help of ``gamma``."""
    parts = []
    for r in REGULARIZERS.values():
        if not r.has_penalty:
            continue
        text = f"{r.name}: {r.symbol}={r.weight:g}"
        if r.annealed_start is not None:
            text += f", or {r.annealed_start:g} when annealed"
        parts.append(text)
    return "regularizer weight (" + "; ".join(parts) + ")"


def d_norm_help() -> str:
    """The per-regularizer default of ``d_norm``, for the CLI help."""
    defaults = "; ".join(f"{r.name}: {r.d_norm}" for r in REGULARIZERS.values())
    return (f"normalization in the DCGAN D: {', '.join(D_NORMS)} (default from the regularizer's paper: {defaults}; "
            "toy MLPs and the ResNet D: none)")
