r"""The sub-batch penalty: a gradient penalty on a fraction of each batch's rows (``reg_fraction``, issue 26).

Every penalty of :data:`fastreg.regularizers.REGULARIZERS` is a mean over rows,
:math:`\Omega = \frac{1}{B}\sum_i \omega_i`. A batch's rows are an i.i.d. sample, so its first
:math:`m = \lceil f B\rceil` rows are a random subset, and :math:`\frac{1}{m}\sum_{i<m}\omega_i` is an unbiased
estimate of :math:`\Omega` (and its parameter gradient of :math:`\nabla_\theta\Omega`) for a D that does not
couple its batch. Its cost, a double backward (or the finite-difference estimate) through D on :math:`m` rows
instead of :math:`B`, scales with :math:`f`; the price is the estimate's variance. The same trade is made by
lazy regularization (:mod:`fastreg.regularizers.lazy`) in time instead of rows, and the two combine.

D's logits for the loss come from one plain forward per batch on every row; the penalty runs D again on the
sub-batch (so the loss's forward cannot be shared with it, which costs :math:`f` of a forward). A batch-norm D
sees the sub-batch as a batch of its own (its statistics are the sub-batch's); its running statistics are
restored after the penalty's forwards, so that they are updated once per loss forward as without a penalty.
"""

from __future__ import annotations

import math

import torch

from .finite_difference import batch_norm_buffers
from .penalties import Penalty


def check_fraction(fraction, name: str = "fraction") -> float:
    """``fraction`` if it is a number in (0, 1], else ValueError naming ``name``."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ValueError(f"{name}: the share of each batch's rows the penalty is taken on must lie in (0, 1], "
                         f"got {fraction!r}")
    return float(fraction)


def subbatch_rows(batch: int, fraction: float) -> int:
    r""":math:`\lceil f B \rceil` (at least one row)."""
    return max(1, math.ceil(fraction * batch - 1e-9))


def subbatch_penalty(compute, D, x_real: torch.Tensor, x_fake: torch.Tensor, options) -> Penalty:
    """A row's penalty call ``compute(D, x_real, x_fake, options)`` on the first ``subbatch_rows`` rows of each
    batch, with D's logits on every row from a plain forward per batch: ``Penalty(penalty, v_real, v_fake)``."""
    fraction = check_fraction(options.fraction)
    v_real, v_fake = D(x_real), D(x_fake)
    buffers = batch_norm_buffers(D)
    saved = [b.clone() for b in buffers]
    sub_real, sub_fake = x_real[:subbatch_rows(x_real.shape[0], fraction)], x_fake[:subbatch_rows(x_fake.shape[0],
                                                                                                  fraction)]
    penalty = compute(D, sub_real, sub_fake, options._replace(fraction=1.0)).penalty
    with torch.no_grad():
        for b, s in zip(buffers, saved):
            b.data.copy_(s)  # through .data, as in finite_difference._batch_difference
    return Penalty(penalty, v_real, v_fake)
