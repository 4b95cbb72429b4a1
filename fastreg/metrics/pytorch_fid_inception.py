"""The FID Inception network of the ``pytorch-fid`` package (Seitzer 2020, github.com/mseitzer/pytorch-fid): the
network behind FIDs comparable with published numbers.

Heusel et al. 2017's FID uses the pool3 features (2048) of the TensorFlow Inception graph of 2015-12-05. pytorch-fid's
``InceptionV3`` with its FID weights (``pt_inception-2015-12-05-6726825d.pth``) is a port of that graph, patched
where it differs from torchvision's Inception-v3; torchvision's ImageNet weights are not (see the ``inception``
extractor). Spec ``pytorch-fid-inception`` loads the FID weights through pytorch-fid's own loader (torch hub's cache,
``~/.cache/torch/hub/checkpoints``, downloading there only when the file is missing and the machine is online);
``pytorch-fid-inception:<file>`` from a local copy of that file, never downloading; ``pytorch-fid-inception:random``
with randomly initialised weights (tests of the plumbing only: its FIDs mean nothing, and its name says so).

Images in [-1, 1] go in as they are (pytorch-fid maps its (0, 1) inputs to that range itself), grey ones repeated to
three channels, resized bilinearly to 299x299 as pytorch-fid does.
"""

from __future__ import annotations

import contextlib
import os

import torch

from .extractors import FeatureExtractor

SPEC = "pytorch-fid-inception"
RANDOM = "random"
FEATURES = 2048


class PytorchFidInception(FeatureExtractor):
    """pool3 features (2048) of pytorch-fid's FID Inception; ``weights``: None (pytorch-fid's loader), a file, or
    ``"random"``. Name: ``pytorch-fid-inception`` (the FID weights via pytorch-fid), ``pytorch-fid-inception:<file
    stem>`` (a local file) or ``pytorch-fid-inception:random-init``."""

    batch_size = 50

    def __init__(self, weights: str | None = None, device: torch.device | str = "cpu"):
        super().__init__(device)
        try:
            from pytorch_fid import inception
        except ImportError:
            raise ImportError(f"extractor: {SPEC} needs the pytorch-fid package: pip install 'fastreg[fid]' "
                              "(or pip install pytorch-fid)") from None
        if weights not in (None, RANDOM) and not os.path.isfile(weights):
            raise FileNotFoundError(f"extractor: {SPEC} weights file {weights!r} does not exist")
        with torch.random.fork_rng(devices=[]), _weights_from(inception, weights):
            model = inception.InceptionV3([inception.InceptionV3.BLOCK_INDEX_BY_DIM[FEATURES]],
                                          resize_input=True, normalize_input=False)
        self.model = model.to(self.device).eval()
        if weights is None:
            self.name = SPEC
        elif weights == RANDOM:
            self.name = f"{SPEC}:random-init"
        else:
            self.name = f"{SPEC}:{os.path.basename(weights).split('.')[0]}"

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.dim() != 4 or batch.shape[1] not in (1, 3):
            raise ValueError(f"images: {self.name} needs [N, 1 or 3, H, W] images, got {tuple(batch.shape)}")
        return self.model(batch.expand(-1, 3, -1, -1))[0].flatten(1)


@contextlib.contextmanager
def _weights_from(inception, weights: str | None):
    """Where pytorch-fid's ``fid_inception_v3`` gets its state dict: its own URL loader (None), a local file, or the
    freshly built network's own random initialisation (``"random"``)."""
    if weights is None:
        yield
        return
    from ..torch_files import load_verified

    original_loader, original_build = inception.load_state_dict_from_url, inception._inception_v3
    built = []

    def build(*args, **kwargs):
        built.append(original_build(*args, **kwargs))
        return built[-1]

    def load(url, *args, **kwargs):
        if weights == RANDOM:
            return built[-1].state_dict()
        state = load_verified(weights, legacy=True)
        if not isinstance(state, dict):
            raise ValueError(f"extractor: {weights} holds a {type(state).__name__}, not the FID Inception weights")
        return state

    inception.load_state_dict_from_url, inception._inception_v3 = load, build
    try:
        yield
    except RuntimeError as exc:  # load_state_dict: keys or shapes that are not the FID Inception's
        raise ValueError(f"extractor: {weights} does not hold pytorch-fid's FID Inception weights ({exc})"[:400]) \
            from None
    finally:
        inception.load_state_dict_from_url, inception._inception_v3 = original_loader, original_build
