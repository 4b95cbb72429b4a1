r"""Discriminator regularizers and add-ons (docs/design.md section 3), one folder:

- :mod:`.table`: :data:`REGULARIZERS`, one executable row per regularizer (its penalty call, defaults,
  presets, the variants it applies to, what a variant implies, its config rules: :func:`check_config`);
- :mod:`.penalties`: the penalties, each returning one :class:`Penalty` (penalty, v_real, v_fake):
  :func:`roth_penalty` (Roth et al. 2017), :func:`wgan_gp_penalty` (Gulrajani et al. 2017),
  :func:`r1_penalty`, :func:`r2_penalty` (Mescheder et al. 2018);
- :mod:`.finite_difference`: the penalties' parameter gradient without double backward
  (``penalty_grad="finite-difference"``);
- :mod:`.lazy`: :class:`LazyRegularization` (the penalty every k-th D step, weight times k);
- :mod:`.subbatch`: the penalty on a fraction of each batch's rows (``fraction``, the config's ``reg_fraction``);
- :mod:`.addons`: :func:`instance_noise` (Arjovsky & Bottou 2017) and :func:`clip_weights_` (WGAN).

A D step with the row of a run::

    row = REGULARIZERS["r1"]
    penalty, v_real, v_fake = row.penalty(D, x_real, x_fake.detach(), variant="ns")
    loss = losses.d_loss("ns", v_real, v_fake) + row.loss_weight(row.weight) * penalty

Renamed in this release (the old names still work for one release): ``gradient_penalty`` is
:func:`wgan_gp_penalty` (the old name warns and returns the bare tensor, as before); ``RothPenalty`` and
``PenaltyAndLogits`` are :class:`Penalty`; :mod:`fastreg.regularizer_table` is :mod:`.table`;
:mod:`fastreg.penalty_gradient` is :mod:`.finite_difference`.
"""

from __future__ import annotations

from . import addons, finite_difference, lazy, penalties, subbatch, table
from .addons import WGAN_CLIP, clip_weights_, instance_noise
from .lazy import LazyRegularization
from .penalties import (FORWARD_MODES, PENALTY_GRADS, Penalty, couples_batch, gradient_penalty, r1_penalty, r2_penalty,
                        random_interpolate, resolve_forward, roth_penalty, wgan_gp_penalty)
from .table import D_NORMS, REGULARIZER_FIELDS, REGULARIZERS, PenaltyOptions, Regularizer, check_config, in_force

GP_LAMBDA = REGULARIZERS["gp"].weight  # lambda of Gulrajani et al. 2017 (10)
RothPenalty = PenaltyAndLogits = Penalty  # the names of the one result type before this release

__all__ = ["D_NORMS", "FORWARD_MODES", "GP_LAMBDA", "LazyRegularization", "PENALTY_GRADS", "Penalty",
           "PenaltyOptions", "REGULARIZERS", "REGULARIZER_FIELDS", "Regularizer", "WGAN_CLIP", "addons",
           "check_config", "clip_weights_", "couples_batch", "finite_difference", "gradient_penalty", "in_force",
           "instance_noise", "lazy", "penalties", "r1_penalty", "r2_penalty", "random_interpolate",
           "resolve_forward", "roth_penalty", "subbatch", "table", "wgan_gp_penalty"]
