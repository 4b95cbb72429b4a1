"""Roth et al. 2017's cross-testing protocol (section 4.2 of "Stabilizing Training of Generative
Adversarial Networks through Regularization").

Two trained models A = (G_A, D_A) and B = (G_B, D_B) on the same data. Each discriminator is
scored on real samples and on its own generator's samples (a confusion matrix), and on the
*other* model's samples: the cross false-positive rate is the fraction of the other generator's
samples it calls real. A D that rejects the other generator's samples, which it never trained
against, has learnt more about the data than a D that only rejects its own generator's.
A sample is called real when its logit is positive (sigmoid(v) > 1/2), the decision rule of a
logistic D; for critics (WGAN) the threshold carries no meaning.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn

from .discriminator import generate, logits

CROSS_SAMPLES = 10_000


class Confusion(NamedTuple):
    """Counts of a D's calls on real samples and on its own generator's samples."""

    real_called_real: int
    real_called_fake: int
    fake_called_real: int
    fake_called_fake: int

    @property
    def real_rate(self) -> float:
        """Fraction of the real samples called real (the true-positive rate, real = positive)."""
        return self.real_called_real / max(self.real_called_real + self.real_called_fake, 1)

    @property
    def fake_rate(self) -> float:
        """Fraction of the own generator's samples called fake (the true-negative rate)."""
        return self.fake_called_fake / max(self.fake_called_real + self.fake_called_fake, 1)

    @property
    def balanced_accuracy(self) -> float:
        """(real_rate + fake_rate) / 2: the accuracy with both classes weighted equally, whatever their counts.
        The pooled accuracy (correct calls / all samples) is dominated by the larger class: with 10,000 fakes
        and 1,797 reals, a D that calls 98% of the reals fake and every fake fake still scores 0.85 pooled,
        0.51 balanced (Brodersen et al. 2010, "The balanced accuracy and its posterior distribution")."""
        return (self.real_rate + self.fake_rate) / 2


class CrossTest(NamedTuple):
    confusion_a: Confusion       # D_A on real and G_A's samples
    confusion_b: Confusion       # D_B on real and G_B's samples
    cross_false_positive_a: float  # fraction of G_B's samples D_A calls real
    cross_false_positive_b: float  # fraction of G_A's samples D_B calls real
    samples: int
    real_samples: int


def confusion(v_real: torch.Tensor, v_fake: torch.Tensor) -> Confusion:
    """Confusion counts with the rule v > 0: real."""
    real_ok, fake_fooled = int((v_real > 0).sum()), int((v_fake > 0).sum())
    return Confusion(real_ok, len(v_real) - real_ok, fake_fooled, len(v_fake) - fake_fooled)


def cross_test(G_a: nn.Module, D_a: nn.Module, G_b: nn.Module, D_b: nn.Module, real: torch.Tensor,
               samples: int = CROSS_SAMPLES, seed: int = 0) -> CrossTest:
    """Both confusion matrices on ``real`` and ``samples`` own fakes, and both cross false-positive rates."""
    generator = torch.Generator().manual_seed(seed)
    fake_a, fake_b = generate(G_a, samples, generator), generate(G_b, samples, generator)
    v_fake_b_by_a, v_fake_a_by_b = logits(D_a, fake_b), logits(D_b, fake_a)
    return CrossTest(confusion(logits(D_a, real), logits(D_a, fake_a)),
                     confusion(logits(D_b, real), logits(D_b, fake_b)),
                     (v_fake_b_by_a > 0).double().mean().item(), (v_fake_a_by_b > 0).double().mean().item(),
                     samples, len(real))
