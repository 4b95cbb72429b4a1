r"""The discriminator regularizers fastreg trains with, one row each: the one place that says what a
regularizer is. Config validation, the CLI help, the schedule builder, the trainer, the demo and the
experiments all read this table (as :data:`fastreg.divergences.DIVERGENCES` does for divergences);
the penalties themselves are in :mod:`fastreg.regularizers`.

Every row says:

- ``weight``: the default weight, and ``symbol`` its name in the source paper (:math:`\gamma` or
  :math:`\lambda`);
- ``loss_factor``: the D loss adds ``loss_factor * weight * penalty``: :math:`\gamma/2` for the
  squared-norm penalties (Roth, R1, R2, whose papers write :math:`\frac{\gamma}{2}\Omega`),
  :math:`\lambda` for WGAN-GP's;
- ``annealed_start`` / ``anneal_alpha``: the annealed preset, :math:`\gamma_t = \gamma_0\,\alpha^{t/T}`
  (Roth only; ``t`` counts generator iterations, ``T`` their total, and every D step of one iteration
  shares :math:`\gamma_t`, as in the authors' code);
- ``points``: where the input gradient is taken (real and fake batches, interpolates, real, fake);
- ``shares_logits``: whether the penalty needs the logits of the main loss's forward (Roth's weights
  :math:`w(v)`), so that the one forward of the D step serves both. Only such a penalty has a choice
  of *forward mode*: ``joint`` (one call on ``cat([x_real, x_fake])``, valid only when D has no
  batch-coupling layer) or ``separate`` (one call per batch, per-batch statistics: the authors'
  protocol). The others run D once per batch they differentiate anyway;
- ``d_norm``: D's normalization layers by default under this regularizer, from its paper:
  batch norm for the DCGAN D without a penalty (Radford et al.) and with Roth's (the authors' code
  keeps it); none in WGAN-GP's critic (Gulrajani et al.: batch norm invalidates the per-sample
  penalty; layer norm is their replacement, ``d_norm=layer``); none for R1/R2 (Mescheder et al.'s
  discriminators have no normalization layers). The default is written into the run's config, never
  applied silently;
- ``variants``: the GAN variants it applies to (``"fgan:*"`` stands for every f-GAN divergence,
  ``"*"`` for all but ``except_variants``).
"""

from __future__ import annotations

from dataclasses import dataclass

D_NORMS = ("batch", "layer", "none")
FORWARD_MODES = ("auto", "joint", "separate")


@dataclass(frozen=True)
class Regularizer:
    """One row of :data:`REGULARIZERS`."""

    name: str
    title: str                 # what it is, with its source
    weight: float              # default (constant) weight
    symbol: str                # "gamma" or "lambda"
    loss_factor: float         # D loss += loss_factor * weight * penalty
    points: str                # where the input gradient is taken
    shares_logits: bool        # needs the main forward's logits (only then joint/separate matters)
    d_norm: str                # default normalization of the DCGAN D under this regularizer
    variants: tuple[str, ...]  # variants it applies to; "*" = every variant not in except_variants
    except_variants: tuple[str, ...] = ()
    annealed_start: float | None = None  # gamma_0 of the annealed preset
    anneal_alpha: float | None = None    # alpha of the annealed preset

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
        if self.name == "none":
            return {"reg": "none"}
        if annealed:
            if self.annealed_start is None:
                raise ValueError(f"regularizer {self.name!r} has no annealed preset")
            return {"reg": self.name, "gamma": self.annealed_start, "gamma_anneal": self.anneal_alpha}
        return {"reg": self.name, "gamma": self.weight}


REGULARIZERS: dict[str, Regularizer] = {r.name: r for r in (
    Regularizer("none", "no gradient penalty", 0.0, "gamma", 0.0, "-", False, "batch", ("*",)),
    Regularizer("roth", "Roth, Lucchi, Nowozin, Hofmann 2017: Omega_JS (gan, ns, bgan) or Omega_f (fgan)",
                0.1, "gamma", 0.5, "real and fake batches", True, "batch", ("gan", "ns", "bgan", "fgan:*"),
                annealed_start=2.0, anneal_alpha=0.01),
    Regularizer("gp", "WGAN-GP, (||grad v|| - 1)^2 on interpolates (Gulrajani et al. 2017)", 10.0, "lambda", 1.0,
                "interpolates", False, "none", ("*",), except_variants=("wgan",)),
    Regularizer("gp1", "one-sided WGAN-GP, max(0, ||grad v|| - 1)^2 on interpolates (Gulrajani et al. 2017)", 10.0,
                "lambda", 1.0, "interpolates", False, "none", ("*",), except_variants=("wgan",)),
    Regularizer("r1", "R1, ||grad v||^2 on real data (Mescheder, Geiger, Nowozin 2018)", 10.0, "gamma", 0.5,
                "real batch", False, "none", ("*",), except_variants=("wgan", "wgan-gp")),
    Regularizer("r2", "R2, ||grad v||^2 on generated data (Mescheder, Geiger, Nowozin 2018)", 10.0, "gamma", 0.5,
                "fake batch", False, "none", ("*",), except_variants=("wgan", "wgan-gp")),
)}

# Config fields that belong to the regularizer: a like-for-like comparison changes only these.
REGULARIZER_FIELDS = ("reg", "gamma", "gamma_anneal", "reg_every", "d_forward")


def get_regularizer(name: str) -> Regularizer:
    """The row called ``name``; ValueError naming the known ones."""
    try:
        return REGULARIZERS[name]
    except KeyError:
        raise ValueError(f"unknown regularizer {name!r}; expected one of {', '.join(REGULARIZERS)}") from None


def weight_help() -> str:
    """The defaults of every regularizer's weight, for the CLI help of ``gamma``."""
    parts = []
    for r in REGULARIZERS.values():
        if r.name == "none":
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
