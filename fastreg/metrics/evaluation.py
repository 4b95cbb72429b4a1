"""Score a generator against its dataset: FID and KID for images, toy metrics for mixtures.

:class:`Evaluator` holds everything that does not change between evaluations of one run, so a
training curve costs only the generated side each time: the extractor, the real features (or, for
a toy mixture, a fixed reference sample), and a fixed latent batch (seeded), so that successive
evaluations differ only by the generator. It draws from its own generators and never touches the
global random state, so evaluating does not change a run's trajectory.

Generated samples are drawn, embedded and folded into the Gaussian fit batch by batch, so only
their features (float32, for KID's subsets) are kept, never all the images.

Result keys name their extractor: ``fid/<extractor>``, ``kid/<extractor>`` (KID's spread over
subsets in ``kid_std/<extractor>``, the FID's imaginary residue in ``fid_residue/<extractor>``, and for a
classifier extractor its held-out accuracy in ``classifier_accuracy/<extractor>``, so every FID says how good
its features are);
toy mixtures give ``wasserstein_1``, ``modes_covered`` and
``high_quality`` (plus FID/KID when an extractor is asked for explicitly); stacked datasets
(:data:`fastreg.data.STACKED_DIGITS`) add the Stacked MNIST mode count and KL to uniform over the evaluation's
samples (:mod:`fastreg.metrics.modes`), ``stacked_modes/<classifier>`` and ``stacked_kl/<classifier>``: a curve
during training; the papers' number (26,000 samples) is ``fastreg fid RUN --samples 26000``.
"""

from __future__ import annotations

import time
from typing import Callable

import torch

from ..data.images import images_at
from .extractors import make_extractor
from .fid import GaussianStats, kid, stats_frechet
from .modes import StackedModes, coverage_of
from .toy import mode_coverage, wasserstein_distance

REAL_REFERENCE_MAX = 10_000   # real images whose features stand for the dataset (all of digits' 1,797)
EVAL_KID_SUBSETS = 10         # fewer than Binkowski et al.'s 100: evaluation runs often during training
GENERATE_BATCH = 250
REFERENCE_SEED_OFFSET = 7919  # toy reference sample: another stream than the training data's


def real_images(dataset, count: int, seed: int) -> torch.Tensor:
    """All images of ``dataset`` if it holds at most ``count``, else ``count`` random ones (seeded)."""
    n = len(dataset)
    index = torch.arange(n) if n <= count else torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:count]
    return images_at(dataset, index).float()


class Evaluator:
    """``Evaluator(dataset, data_name, ...)(sample)`` -> metrics of the generator ``sample: z -> x``.

    ``dataset`` is what the run trains on (an image dataset or a toy mixture), ``data_name`` its
    name (the default extractor and the toy reference depend on it), ``samples`` the generated
    count per evaluation, ``extractor`` a spec of :mod:`fastreg.metrics.extractors`.
    """

    def __init__(self, dataset, data_name: str, z_dim: int, samples: int = 1000, extractor: str = "auto",
                 device: torch.device | str = "cpu", seed: int = 0, root: str | None = None,
                 kid_subsets: int = EVAL_KID_SUBSETS):
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 2:
            raise ValueError(f"samples: must be an integer >= 2, got {samples!r}")
        start = time.perf_counter()
        self.samples, self.kid_subsets, self.seed = samples, kid_subsets, seed
        self.latents = torch.randn(samples, z_dim, generator=torch.Generator().manual_seed(seed))
        self.mixture = dataset if hasattr(dataset, "sample") else None
        self.extractor = self.real_features = None
        if self.mixture is not None:
            from .. import data

            self.reference = data.get_dataset(data_name, seed=seed + REFERENCE_SEED_OFFSET).sample(samples)
        if self.mixture is None or extractor != "auto":  # toy mixtures: FID only when asked for
            images = self.reference if self.mixture is not None else real_images(dataset, REAL_REFERENCE_MAX, seed)
            resolution = images.shape[-1] if images.dim() == 4 else None
            self.extractor = make_extractor(extractor, data_name, resolution, device, root=root)
            self.real_features = self.extractor(images, progress=f"{self.extractor.name} features of {len(images)} "
                                                               f"real images")
            self.real_stats = GaussianStats.of(self.real_features)
        self.stacked = None
        if self.mixture is None:
            from ..data import STACKED_DIGITS

            if data_name in STACKED_DIGITS:
                self.stacked = StackedModes(data_name, images.shape[-1], root=root, device=device)
        self.setup_seconds = time.perf_counter() - start  # extractor (training it, if not cached) and real side

    def __call__(self, sample: Callable[[torch.Tensor], torch.Tensor]) -> dict:
        start = time.perf_counter()
        stats, features, samples, modes = GaussianStats(), [], [], []
        with torch.no_grad():
            for z in self.latents.split(GENERATE_BATCH):
                x = sample(z).float().cpu()
                if self.mixture is not None:
                    samples.append(x)
                if self.stacked is not None and torch.isfinite(x).all():
                    modes.append(self.stacked.modes(x))
                if self.extractor is not None:
                    batch_features = self.extractor(x)
                    stats.update(batch_features)
                    features.append(batch_features.float())
        result = self.toy_metrics(torch.cat(samples)) if self.mixture is not None else {}
        if self.extractor is not None:
            result.update(self.feature_metrics(self.real_stats, self.real_features, stats, torch.cat(features)))
        if self.stacked is not None and len(modes) == len(self.latents.split(GENERATE_BATCH)):
            coverage = coverage_of(torch.cat(modes))
            result[f"stacked_modes/{self.stacked.name}"] = coverage.modes
            result[f"stacked_kl/{self.stacked.name}"] = coverage.kl
        result["eval_seconds"] = time.perf_counter() - start
        return result

    def feature_metrics(self, real_stats: GaussianStats, real: torch.Tensor, fake_stats: GaussianStats,
                        fake: torch.Tensor) -> dict:
        name = self.extractor.name
        fid = stats_frechet(real_stats, fake_stats)
        result = kid(real, fake, subsets=self.kid_subsets, generator=torch.Generator().manual_seed(self.seed))
        metrics = {f"fid/{name}": fid.distance, f"fid_residue/{name}": fid.imaginary_residue,
                   f"kid/{name}": result.mean, f"kid_std/{name}": result.std}
        classifier = getattr(self.extractor, "classifier", None)
        if classifier is not None:
            metrics[f"classifier_accuracy/{name}"] = classifier.held_out_accuracy
        return metrics

    def toy_metrics(self, fake: torch.Tensor) -> dict:
        coverage = mode_coverage(fake, self.mixture.modes, self.mixture.sigma)
        return {"wasserstein_1": wasserstein_distance(fake, self.reference, p=1),
                "modes_covered": coverage.modes_covered, "high_quality": coverage.high_quality_fraction}

    def real_floor(self) -> dict:
        """The metrics between two disjoint random halves of the real reference: what an exact copy of
        the data would score at half the reference size (FID is biased upwards by small samples)."""
        if self.extractor is None:
            raise ValueError("extractor: the real-data floor needs FID features; toy metrics have none")
        order = torch.randperm(len(self.real_features), generator=torch.Generator().manual_seed(self.seed + 1))
        half = len(order) // 2
        a, b = self.real_features[order[:half]], self.real_features[order[half:2 * half]]
        return self.feature_metrics(GaussianStats.of(a), a, GaussianStats.of(b), b)


def describe(result: dict) -> str:
    """One line: ``FID[classifier:digits] 12.3  KID[classifier:digits] 0.0123 +- 0.0010 ...`` (the KID's spread over
    subsets when there were several)."""
    parts = []
    for key, value in result.items():
        kind, _, name = key.partition("/")
        if kind == "fid":
            parts.append(f"FID[{name}] {value:.3f}")
        elif kind == "kid":
            spread = result.get(f"kid_std/{name}", 0.0)
            parts.append(f"KID[{name}] {value:.5f}" + (f" +- {spread:.5f}" if spread else ""))
        elif kind == "classifier_accuracy":
            parts.append(f"(classifier held-out accuracy {value:.1%})")
        elif kind == "stacked_modes":
            parts.append(f"modes {value}/1000 (KL {result.get(f'stacked_kl/{name}', float('nan')):.3f})")
        elif key == "wasserstein_1":
            parts.append(f"W1 {value:.4f}")
        elif key in ("modes_covered", "high_quality"):
            parts.append(f"{key.replace('_', ' ')} {value:.3g}")
    return "  ".join(parts)
