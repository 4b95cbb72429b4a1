"""Lazy regularization: the penalty every k-th D step with k times its weight (Karras et al. 2020).

StyleGAN2 (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN", appendix B) runs
the lazy penalty as an optimizer step of its own, and its code therefore also rescales Adam's hyperparameters
with ``c = k / (k + 1)`` (learning rate times c, betas to the power c). fastreg does not, and need not: its
penalty is added to the D loss of the due step and goes through that step's one optimizer update, so the
only change is the weight times k (the average weight per D step is unchanged; docs/design.md section 3.2).
"""

from __future__ import annotations


class LazyRegularization:
    """Apply a penalty only every ``every``-th D step, with its weight multiplied by ``every``, so its
    average weight per step is unchanged::

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
