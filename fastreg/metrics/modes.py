"""Mode coverage on Stacked MNIST: how many of the 1,000 digit triples a generator produces, and how evenly.

Stacked MNIST (Metz et al. 2017, "Unrolled Generative Adversarial Networks"; Srivastava et al. 2017, VEEGAN;
Lin et al. 2018, PacGAN) stacks three MNIST digits as the R, G and B channels, so it has M = 1,000 modes, the
triples (a, b, c). A classifier trained on the single digits labels each channel of each generated sample; the
sample's mode is ``100 a + 10 b + c``. Over N generated samples (N = 26,000 in VEEGAN and PacGAN,
:data:`DEFAULT_SAMPLES`), with q_m the fraction of them in mode m:

    modes covered = #{m : q_m > 0}
    KL(q || U)    = sum_{m: q_m > 0} q_m log(q_m M)  =  log M - H(q)

(U the uniform distribution over the M modes; natural log). A generator that repeats one triple covers 1 mode
with KL = log 1000 = 6.91; real stacked digits cover about all 1,000 with KL near 0 (the finite-sample floor:
about (M - 1) / (2 N) = 0.019 at 26,000). A weak classifier inflates the count (a misread channel lands in another
mode), so every result carries the classifier's held-out accuracy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

DEFAULT_SAMPLES = 26_000
N_MODES = 1000
BATCH = 1000


@dataclass(frozen=True)
class ModeCoverage:
    """Modes covered (of ``N_MODES``), KL(generated mode histogram || uniform), the sample count, the histogram
    ``counts [1000]`` and the channel classifier's held-out accuracy (None when unknown)."""

    modes: int
    kl: float
    samples: int
    counts: torch.Tensor
    classifier_accuracy: float | None = None

    def as_dict(self) -> dict:
        return {"modes": self.modes, "kl": self.kl, "samples": self.samples,
                "classifier_accuracy": self.classifier_accuracy}


def coverage_of(modes: torch.Tensor, n_modes: int = N_MODES, classifier_accuracy: float | None = None
                ) -> ModeCoverage:
    """:class:`ModeCoverage` of integer mode labels ``modes [N]`` in ``0..n_modes-1``."""
    modes = torch.as_tensor(modes).flatten()
    if modes.numel() == 0:
        raise ValueError("modes: need at least one sample")
    if modes.dtype.is_floating_point or bool((modes < 0).any()) or bool((modes >= n_modes).any()):
        raise ValueError(f"modes: must be integer labels in 0..{n_modes - 1}")
    counts = torch.bincount(modes.long(), minlength=n_modes)
    q = counts[counts > 0].double() / modes.numel()
    kl = float((q * torch.log(q * n_modes)).sum())
    return ModeCoverage(int((counts > 0).sum()), max(kl, 0.0), int(modes.numel()), counts, classifier_accuracy)


def channel_modes(images: torch.Tensor, classifier: torch.nn.Module, batch: int = BATCH) -> torch.Tensor:
    """The mode ``100 a + 10 b + c`` of each stacked image ``[N, 3, R, R]``: ``classifier`` (on single-channel
    digits ``[N, 1, R, R]``) reads each channel."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images: stacked MNIST samples are [N, 3, R, R], got {tuple(images.shape)}")
    digits = []
    with torch.no_grad():
        for chunk in images.split(batch):
            n, _, h, w = chunk.shape
            predicted = classifier(chunk.reshape(n * 3, 1, h, w)).argmax(1).reshape(n, 3)
            digits.append(predicted)
    d = torch.cat(digits)
    return 100 * d[:, 0] + 10 * d[:, 1] + d[:, 2]


class StackedModes:
    """``StackedModes(data, resolution)(images)`` -> :class:`ModeCoverage` of stacked samples of dataset ``data``
    (a key of :data:`fastreg.data.STACKED_DIGITS`), read by the cached classifier of its digit dataset at
    ``resolution`` (:func:`fastreg.metrics.classifier.load_or_train_classifier`)."""

    def __init__(self, data: str, resolution: int, root: str | None = None, device: torch.device | str = "cpu"):
        from ..data import STACKED_DIGITS
        from .classifier import load_or_train_classifier

        if data not in STACKED_DIGITS:
            raise ValueError(f"data: mode coverage needs a stacked dataset ({', '.join(STACKED_DIGITS)}), "
                             f"got {data!r}")
        self.digits = STACKED_DIGITS[data]
        self.classifier = load_or_train_classifier(self.digits, resolution, root=root)
        self.model = self.classifier.model.to(device).eval()
        self.device = torch.device(device)
        self.name = f"classifier:{self.digits}"

    def modes(self, images: torch.Tensor) -> torch.Tensor:
        return channel_modes(images.to(self.device, torch.float32), self.model).cpu()

    def __call__(self, images: torch.Tensor) -> ModeCoverage:
        return coverage_of(self.modes(images), classifier_accuracy=self.classifier.held_out_accuracy)

    def of_generator(self, sample: Callable[[torch.Tensor], torch.Tensor], z_dim: int,
                     samples: int = DEFAULT_SAMPLES, seed: int = 0) -> ModeCoverage:
        """Coverage of ``samples`` draws of the generator ``sample: z -> x`` from seeded latents, in batches (only
        the labels are kept)."""
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples: must be a positive integer, got {samples!r}")
        generator, labels = torch.Generator().manual_seed(seed), []
        with torch.no_grad():
            for start in range(0, samples, BATCH):
                z = torch.randn(min(BATCH, samples - start), z_dim, generator=generator)
                labels.append(self.modes(sample(z).float()))
        return coverage_of(torch.cat(labels), classifier_accuracy=self.classifier.held_out_accuracy)


def uniform_kl_floor(samples: int, n_modes: int = N_MODES) -> float:
    """The expected KL(q || U) of ``samples`` draws from the uniform distribution itself, to first order
    ((M - 1) / 2N, the bias of the plug-in entropy): what a perfect generator scores."""
    return (n_modes - 1) / (2 * samples)


def max_kl(n_modes: int = N_MODES) -> float:
    """KL of a single mode: log M."""
    return math.log(n_modes)
