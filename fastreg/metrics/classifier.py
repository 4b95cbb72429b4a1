"""The classifier behind the ``classifier:<dataset>`` feature extractor, trained once and cached.

FID needs a feature space. The Inception pool3 features of Heusel et al. 2017 are the standard,
but fastreg never downloads weights, and Inception features say little about 8x8 digits. So
fastreg trains a small CNN on the dataset's own labels and uses its penultimate layer (128
features, after global average pooling) instead. docs/design.md section 7: such FIDs are comparable
only with FIDs from the same extractor, which is why every result names it.

The split is held out properly: a stratified 20% of every class (fixed seed) is never trained on
and gives the reported accuracy. Training is seeded and runs inside ``torch.random.fork_rng``, so
it neither depends on nor disturbs the caller's random state (nor does building a model to load).
The trained weights and their
accuracy are cached as ``$FASTREG_CACHE/classifiers/<dataset>-r<resolution>-<data hash>-v<version>.pt``
(``FASTREG_CACHE`` defaults to ``~/.cache/fastreg``); a second call on the same data loads them. The data
hash (:func:`data_hash`, the first 16 hex digits of a SHA-256 over the dataset's images and labels) keys the
cache by what the classifier was trained on, not by the dataset's name: a classifier trained on a 5,000-digit
root is never reused for full MNIST under another root. Every result carries the held-out accuracy
(:class:`TrainedClassifier`), and the FIDs it produces report it (``classifier_accuracy/<name>``). A cache file that
fails its checks (zip CRCs and regular members, :func:`fastreg.torch_files.load_verified`), misses a key, does
not fit the network, or does not match its manifest ``<file>.manifest.json`` (its SHA-256, size, and the
dataset, resolution and data hash it was trained on: a flipped bit anywhere, a file of other data) is
reported in a warning naming it, trained again and replaced; a folder in its place is removed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import warnings
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

CACHE_VERSION = 1          # bump when the architecture or the training recipe changes
SPLIT_SEED = 0
TRAIN_SEED = 0
HELD_OUT_FRACTION = 0.2
TRAIN_STEPS = 600
BATCH_SIZE = 64
LEARNING_RATE = 2e-3
FEATURES = 128
MAX_SHIFT = 0.125          # augmentation: translate by up to 1/8 of the image side...
MAX_ROTATION = math.radians(10)   # ...rotate by up to 10 degrees, scale by 0.9 to 1.1


def cache_dir() -> str:
    """``$FASTREG_CACHE`` or ``~/.cache/fastreg``."""
    return os.environ.get("FASTREG_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "fastreg")


class ImageClassifier(nn.Module):
    """A small CNN for ``[N, channels, R, R]`` images in [-1, 1].

    conv3x3(32) - conv3x3/2(64) - conv3x3/2(128) - global average pool -> 128 features -> classes,
    batch norm and ReLU after each conv; the first conv has stride 2 too above 16x16 (4x less work
    at 32x32). :meth:`features` gives the pooled 128 features.
    """

    def __init__(self, channels: int, classes: int, resolution: int):
        super().__init__()
        strides = (1 if resolution <= 16 else 2, 2, 2)
        layers, c_in = [], channels
        for width, stride in zip((32, 64, FEATURES), strides):
            layers += [nn.Conv2d(c_in, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
            c_in = width
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(FEATURES, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@dataclass
class TrainedClassifier:
    """A classifier with its provenance: held-out accuracy, cache file, and whether it was just trained."""

    model: ImageClassifier
    dataset: str
    resolution: int
    held_out_accuracy: float
    held_out_count: int
    path: str
    trained_now: bool
    data_hash: str = ""


def data_hash(dataset) -> str:
    """The first 16 hex digits of SHA-256 over a dataset's images and labels, the cache key of its classifier.

    The dataset's raw arrays when it holds them (``images``/``labels`` of fastreg's tensor datasets, ``data``/
    ``targets`` of torchvision's MNIST-style and CIFAR datasets: the stored pixels, before the transform, which the
    resolution in the cache name fixes), else every ``(image, label)`` item. Shapes and dtypes are hashed too."""
    digest = hashlib.sha256()
    for array in _raw_arrays(dataset):
        array = array.detach().cpu().contiguous() if torch.is_tensor(array) else torch.as_tensor(array)
        digest.update(f"{tuple(array.shape)}:{array.dtype};".encode())
        digest.update(array.contiguous().view(torch.uint8).numpy().tobytes() if array.numel() else b"")
    return digest.hexdigest()[:16]


def _raw_arrays(dataset) -> tuple:
    for images, labels in (("images", "labels"), ("data", "targets")):
        x, y = getattr(dataset, images, None), getattr(dataset, labels, None)
        if x is not None and y is not None and hasattr(x, "shape"):
            return torch.as_tensor(x), torch.as_tensor(y)
    return labelled_images(dataset)


def held_out_split(labels: torch.Tensor, fraction: float = HELD_OUT_FRACTION,
                   seed: int = SPLIT_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, held-out indices): ``round(fraction * n_c)`` random members of every class c held out."""
    generator = torch.Generator().manual_seed(seed)
    train, held = [], []
    for c in torch.unique(labels):
        members = torch.nonzero(labels == c).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        cut = round(fraction * len(members))
        held.append(members[:cut])
        train.append(members[cut:])
    return torch.cat(train).sort().values, torch.cat(held).sort().values


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random small rotation, scaling and translation per image; the background (-1) fills in."""
    n = x.shape[0]
    angle = (torch.rand(n, generator=generator) * 2 - 1) * MAX_ROTATION
    scale = 1 + (torch.rand(n, generator=generator) * 2 - 1) * 0.1
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * (2 * MAX_SHIFT)  # grid units span 2
    cos, sin = angle.cos() / scale, angle.sin() / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x + 1, grid, align_corners=False, padding_mode="zeros") - 1


def train_classifier(images: torch.Tensor, labels: torch.Tensor, steps: int = TRAIN_STEPS,
                     seed: int = TRAIN_SEED) -> ImageClassifier:
    """Adam (lr 2e-3, cosine decay) on cross-entropy for ``steps`` batches of 64 augmented images."""
    from tqdm.auto import tqdm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ImageClassifier(images.shape[1], int(labels.max()) + 1, images.shape[-1])
        generator = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
        model.train()
        for _ in tqdm(range(steps), desc="training the FID classifier", unit="step", disable=None, leave=False,
                      file=sys.stderr):
            index = torch.randint(len(images), (BATCH_SIZE,), generator=generator)
            loss = F.cross_entropy(model(augment(images[index], generator)), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 512) -> float:
    """Fraction of ``images`` whose arg-max class equals ``labels``."""
    model.eval()
    hits = sum((model(images[i:i + batch_size]).argmax(1) == labels[i:i + batch_size]).sum().item()
               for i in range(0, len(images), batch_size))
    return hits / len(images)


def labelled_images(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """(images [N, C, R, R], integer labels [N]) of an image dataset that yields ``(image, label)``."""
    images, labels = getattr(dataset, "images", None), getattr(dataset, "labels", None)
    if isinstance(images, torch.Tensor) and isinstance(labels, torch.Tensor):
        return images.float(), labels.long()
    pairs = [dataset[i] for i in range(len(dataset))]
    if not pairs or not all(isinstance(label, int) or (torch.is_tensor(label) and label.dim() == 0)
                            for _, label in pairs):
        raise ValueError("extractor: a classifier needs a dataset of images with integer class labels")
    return torch.stack([image for image, _ in pairs]).float(), torch.tensor([int(label) for _, label in pairs])


def cache_path(dataset: str, resolution: int, content: str) -> str:
    """The cache file of the classifier of ``dataset`` at ``resolution`` trained on data of hash ``content``."""
    safe = dataset.replace(":", "-").replace("/", "-")
    return os.path.join(cache_dir(), "classifiers", f"{safe}-r{resolution}-{content}-v{CACHE_VERSION}.pt")


def load_or_train_classifier(dataset: str, resolution: int, root: str | None = None) -> TrainedClassifier:
    """The cached classifier of ``dataset`` (under ``root``) at ``resolution``, trained (and cached) on first use;
    keyed by the data's content (:func:`data_hash`), so another root's data gets its own classifier."""
    from .. import data

    source = data.get_dataset(dataset, resolution=resolution, root=root)
    content = data_hash(source)
    path = cache_path(dataset, resolution, content)
    if os.path.isdir(path):  # not a file fastreg wrote (its cache files are never folders): heal it
        warnings.warn(f"FID classifier cache {path} is a folder, not a cache file; removing it and training the "
                      f"classifier again", stacklevel=2)
        shutil.rmtree(path)
    if os.path.exists(path):
        try:
            return _load_cached(path, dataset, resolution, content)
        except (ValueError, KeyError, TypeError, RuntimeError, OSError) as exc:
            detail = str(exc).replace(f"{path} is damaged: ", "")
            warnings.warn(f"FID classifier cache {path} is damaged ({type(exc).__name__}: {detail}); training "
                          f"the classifier again and replacing the file", stacklevel=2)
    images, labels = labelled_images(source)
    train, held = held_out_split(labels)
    print(f"fastreg: training the FID classifier of {dataset} at {resolution}x{resolution} ({len(train)} images, "
          f"{TRAIN_STEPS} steps; cached in {path})", file=sys.stderr, flush=True)
    model = train_classifier(images[train], labels[train])
    result = TrainedClassifier(model, dataset, resolution, accuracy(model, images[held], labels[held]), len(held),
                               path, trained_now=True, data_hash=content)
    print(f"fastreg: FID classifier of {dataset}: {result.held_out_accuracy:.1%} accuracy on {len(held)} held-out "
          f"images", file=sys.stderr, flush=True)
    _save(result, images.shape[1], int(labels.max()) + 1)
    return result


def _load_cached(path: str, dataset: str, resolution: int, content: str = "") -> TrainedClassifier:
    from ..torch_files import load_verified

    state = load_verified(path)
    if not isinstance(state, dict):
        raise TypeError(f"it holds a {type(state).__name__}, not a dict")
    with torch.random.fork_rng(devices=[]):  # initialisation is overwritten; leave the caller's RNG alone
        model = ImageClassifier(int(state["channels"]), int(state["classes"]), resolution)
    model.load_state_dict(state["model"])
    held_accuracy, count = float(state["held_out_accuracy"]), int(state["held_out_count"])
    if state.get("data_hash", content) != content:
        raise ValueError(f"it was trained on data of hash {state['data_hash']}, not {content}")
    _check_manifest(path, _key(dataset, resolution, content))
    return TrainedClassifier(model.eval(), dataset, resolution, held_accuracy, count, path, trained_now=False,
                             data_hash=content)


def _key(dataset: str, resolution: int, content: str) -> dict:
    """What a cached classifier was trained on: its manifest records it, a load checks it."""
    return {"dataset": dataset, "resolution": resolution, "data_hash": content, "version": CACHE_VERSION}


def manifest_path(path: str) -> str:
    return path + ".manifest.json"


def _check_manifest(path: str, key: dict) -> None:
    """ValueError unless ``path``'s manifest holds its SHA-256 and size and was written for ``key``."""
    from ..torch_files import file_sha256

    try:
        with open(manifest_path(path), encoding="utf-8") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"it has no manifest {manifest_path(path)} (an interrupted save, or not written by "
                         f"fastreg)") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"its manifest does not load ({type(exc).__name__}: {exc})") from None
    if not isinstance(manifest, dict) or {k: manifest.get(k) for k in key} != key:
        raise ValueError(f"its manifest was written for {manifest!r}, not {key}")
    if manifest.get("size") != os.path.getsize(path) or manifest.get("sha256") != file_sha256(path):
        raise ValueError("its bytes are not the ones written (SHA-256 or size differs from its manifest's)")


def _save(result: TrainedClassifier, channels: int, classes: int) -> None:
    """Atomic write (:func:`fastreg.atomic.atomic_write`: a concurrent reader never sees half a file, a killed
    writer leaves no torn one), then the manifest: SHA-256, size and what it was trained on."""
    from ..atomic import atomic_write, write_text
    from ..torch_files import file_sha256

    with atomic_write(result.path, "wb") as f:
        torch.save({"model": result.model.state_dict(), "channels": channels, "classes": classes,
                    "held_out_accuracy": result.held_out_accuracy, "held_out_count": result.held_out_count,
                    "split_seed": SPLIT_SEED, "held_out_fraction": HELD_OUT_FRACTION,
                    "data_hash": result.data_hash}, f)
    manifest = {**_key(result.dataset, result.resolution, result.data_hash), "size": os.path.getsize(result.path),
                "sha256": file_sha256(result.path)}
    write_text(manifest_path(result.path), json.dumps(manifest, indent=1) + "\n")
