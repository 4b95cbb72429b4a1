"""Feature extractors for FID and KID; each has a ``name`` that every result carries.

FIDs computed with different extractors are different numbers on different scales (docs/design.md
section 7), so a result is always reported as ``fid/<name>``. An extractor is chosen by a *spec*
(the ``extractor`` argument, the ``eval_extractor`` config field, ``--extractor`` on the CLI):

- ``classifier:<dataset>`` (or ``classifier`` for the run's own dataset): the pooled 128
  penultimate features of a small CNN trained on the dataset's labels at the images' resolution,
  trained once and cached (:mod:`fastreg.metrics.classifier`). Name ``classifier:<dataset>``.
- ``inception:<weights file>``, or ``inception`` with ``$FASTREG_INCEPTION_WEIGHTS``: the 2048
  pool3 features of torchvision's Inception-v3 (Szegedy et al. 2016), as in Heusel et al. 2017,
  loaded from a local file of torchvision's ImageNet weights (``inception_v3_google-*.pth``).
  Images are resized to 299x299 and grey images repeated to three channels. fastreg never
  downloads the weights. Name ``inception:<file stem>``: these features are close to, but not
  identical with, the TensorFlow Inception of the original FID code, so their FIDs are not
  comparable with published numbers either.
- ``pytorch-fid-inception[:<weights file>|random]``: the FID Inception of the ``pytorch-fid``
  package with its FID weights (:mod:`fastreg.metrics.pytorch_fid_inception`): the extractor whose
  FIDs are comparable with published ones. Name ``pytorch-fid-inception`` (or with the file stem,
  or ``:random-init`` for the tests' randomly initialised network).
  On a stacked dataset (:data:`fastreg.data.STACKED_DIGITS`: ``stacked-mnist-5k``, ``color-mnist``) ``classifier``
  means the classifier of its digits (``classifier:mnist-5k``, ``classifier:mnist``), applied to each channel
  with the three channels' features side by side (384 features).
- ``raw``: the samples themselves, flattened (toy data, tests). Name ``raw``.
- ``auto``: Inception when ``$FASTREG_INCEPTION_WEIGHTS`` is set, otherwise ``raw`` for toy
  mixtures and ``classifier:<dataset>`` for image datasets.
"""

from __future__ import annotations

import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..progress import bar

INCEPTION_ENV = "FASTREG_INCEPTION_WEIGHTS"
INCEPTION_SIZE = 299
SPEC_HELP = ("auto, classifier[:<dataset>], inception[:<weights file>], pytorch-fid-inception[:<weights file>|random] "
             "or raw")


class FeatureExtractor:
    """Maps samples ``[N, ...]`` to features ``[N, d]`` (float64, CPU) in batches, without gradients."""

    name: str = ""
    batch_size: int = 250

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def __call__(self, samples: torch.Tensor, progress: str | None = None) -> torch.Tensor:
        """Features of ``samples``; with ``progress``, a bar of that title on a terminal while they are computed."""
        parts = []
        with bar(total=len(samples), desc=progress, unit="image", leave=False, disable=None if progress else True) as b:
            for i in range(0, len(samples), self.batch_size):
                parts.append(self.features(samples[i:i + self.batch_size].to(self.device, torch.float32)))
                b.update(len(parts[-1]))
        return torch.cat(parts).to("cpu", torch.float64)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class RawFeatures(FeatureExtractor):
    """The samples themselves, flattened."""

    name = "raw"

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.flatten(1)


class ClassifierFeatures(FeatureExtractor):
    """Penultimate features of the dataset classifier (:mod:`fastreg.metrics.classifier`)."""

    def __init__(self, dataset: str, resolution: int, device: torch.device | str = "cpu", root: str | None = None):
        super().__init__(device)
        from .classifier import load_or_train_classifier

        self.classifier = load_or_train_classifier(dataset, resolution, root=root)
        self.model = self.classifier.model.to(self.device).eval()
        self.name = f"classifier:{dataset}"
        self.resolution = resolution

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.dim() != 4 or batch.shape[-1] != self.resolution or batch.shape[-2] != self.resolution:
            raise ValueError(f"images: {self.name} was trained on {self.resolution}x{self.resolution} images, "
                             f"got shape {tuple(batch.shape)}")
        channels = self.model.body[0].in_channels
        if channels == 1 and batch.shape[1] > 1:  # stacked digits: each channel's features, side by side
            n, c, h, w = batch.shape
            return self.model.features(batch.reshape(n * c, 1, h, w)).reshape(n, -1)
        return self.model.features(batch)


class InceptionFeatures(FeatureExtractor):
    """Inception-v3 pool3 features (2048) from a local weights file; never downloads."""

    batch_size = 50

    def __init__(self, weights: str, device: torch.device | str = "cpu"):
        super().__init__(device)
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"extractor: Inception weights file {weights!r} does not exist "
                                    f"(fastreg never downloads weights)")
        self.model = _inception_from_file(weights).to(self.device).eval()
        self.name = f"inception:{os.path.basename(weights).split('.')[0]}"

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.dim() != 4 or batch.shape[1] not in (1, 3):
            raise ValueError(f"images: Inception needs [N, 1 or 3, H, W] images, got {tuple(batch.shape)}")
        x = batch.expand(-1, 3, -1, -1)  # grey -> RGB; inputs stay in [-1, 1], the range the weights expect
        x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
        return self.model(x)


def _inception_from_file(weights: str) -> nn.Module:
    from torchvision.models import inception_v3

    with torch.random.fork_rng(devices=[]):  # initialisation is overwritten; leave the caller's RNG alone
        model = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=False)
    from ..torch_files import load_verified

    state = load_verified(weights, legacy=True)  # DamagedFileError / UnsafeFileError naming the file
    if not isinstance(state, dict):
        raise ValueError(f"extractor: {weights} holds a {type(state).__name__}, not Inception-v3 weights")
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("AuxLogits.")]  # the auxiliary head is optional
    if missing or unexpected:
        raise ValueError(f"extractor: {weights} does not hold torchvision Inception-v3 weights "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.aux_logits, model.AuxLogits, model.fc = False, None, nn.Identity()
    return model


def check_spec(spec: str) -> None:
    """ValueError unless ``spec`` has one of the forms of :data:`SPEC_HELP` (nothing is loaded)."""
    kind, _, argument = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    if kind in ("auto", "raw") and not argument:
        return
    if kind in ("classifier", "inception", "pytorch-fid-inception") and (argument or ":" not in spec):
        return
    raise ValueError(f"extractor: unknown spec {spec!r}; expected {SPEC_HELP}")


def resolve_spec(spec: str, data: str | None) -> str:
    """The explicit spec ``auto`` and ``classifier`` stand for, given the samples' dataset name."""
    from .. import data as datasets

    check_spec(spec)
    if spec == "auto":
        if os.environ.get(INCEPTION_ENV):
            return "inception"
        if data in datasets.TOY:
            return "raw"
        spec = "classifier"
    if spec == "classifier":
        if data is None or data in datasets.TOY:
            raise ValueError(f"extractor: {spec!r} needs an image dataset with labels, got data={data!r}; "
                             f"name one, e.g. classifier:digits")
        return f"classifier:{datasets.STACKED_DIGITS.get(data, data)}"
    return spec


def make_extractor(spec: str = "auto", data: str | None = None, resolution: int | None = None,
                   device: torch.device | str = "cpu", root: str | None = None) -> FeatureExtractor:
    """The extractor of ``spec`` for samples of dataset ``data`` at ``resolution`` (see the module doc);
    ``root`` is the data folder of the classifier's dataset (``$FASTREG_DATA`` or ``./data`` when None)."""
    spec = resolve_spec(spec, data)
    kind, _, argument = spec.partition(":")
    if kind == "raw":
        return RawFeatures(device)
    if kind == "pytorch-fid-inception":
        from .pytorch_fid_inception import PytorchFidInception

        return PytorchFidInception(argument or None, device)
    if kind == "inception":
        weights = argument or os.environ.get(INCEPTION_ENV)
        if not weights:
            raise ValueError(f"extractor: 'inception' needs a weights file: use inception:<file> or set "
                             f"{INCEPTION_ENV} (fastreg never downloads weights)")
        return InceptionFeatures(weights, device)
    if resolution is None:
        raise ValueError(f"resolution: the {spec} extractor needs the images' resolution")
    return ClassifierFeatures(argument, resolution, device, root=root)
