"""The sample sets ``fastreg fid`` compares: a run's generator, a folder of images, or a dataset.

A *source* is named by a string:

- a run folder (it holds ``config.yaml``): samples of the generator of its newest checkpoint
  (the EMA generator when the run keeps one) from latents drawn with a fixed seed;
- ``data:<name>``: real images of :func:`fastreg.data.get_dataset` (``data:digits``);
- any other folder: every image file below it (``.png .jpg .jpeg .bmp .webp``), in path order,
  scaled from [0, 255] to [-1, 1] like fastreg's datasets.

:func:`compare` embeds both sides batch by batch with one extractor (named in the result) and
returns their FID and KID. Images are brought to the extractor's resolution (bilinear) and
channel count (grey repeated to RGB, RGB averaged to grey) before embedding.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from ..progress import bar, plain_line
from .evaluation import EVAL_KID_SUBSETS, real_images
from .extractors import FeatureExtractor, make_extractor
from .fid import GaussianStats, kid, stats_frechet

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
BATCH = 250
REAL_MAX = 10_000  # at most this many images of a dataset or folder (a seeded random subset beyond)


@dataclass
class Source:
    """A named set of images: ``batches(count)`` yields ``[n, C, R, R]`` tensors in [-1, 1]."""

    spec: str
    kind: str                  # "run", "data" or "folder"
    data: str | None           # the dataset the images are (or imitate), for the default extractor
    resolution: int | None
    channels: int
    batches: Callable[[int], Iterator[torch.Tensor]]
    size: int | None = None    # images available (None: a generator, as many as asked for)

    @property
    def label(self) -> str:
        return f"{self.kind} {self.spec}"


def is_run(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "config.yaml"))


def open_source(spec: str, samples: int, seed: int = 0, device: str | None = None,
                resolution: int | None = None, open_run: Callable | None = None) -> Source:
    """The source named ``spec`` (module doc); ``samples`` is the count a run generates.

    A run folder is opened with ``open_run(path, device)`` (:func:`fastreg.train.runs.open_run`, which the
    caller hands in: the metrics do not import the trainer); without it a run folder is a ValueError."""
    if spec.startswith("data:"):
        return dataset_source(spec, resolution, seed)
    if not os.path.isdir(spec):
        raise FileNotFoundError(f"source: {spec!r} is neither a folder nor data:<dataset name>")
    if is_run(spec):
        if open_run is None:
            raise ValueError(f"source: {spec!r} is a run folder, and no open_run was given to open it")
        return run_source(open_run(spec, device), seed)
    return folder_source(spec, seed)


def _chunks(images: torch.Tensor) -> Callable[[int], Iterator[torch.Tensor]]:
    return lambda count: iter(images[:count].split(BATCH))


def _subset(count: int, seed: int) -> torch.Tensor:
    if count <= REAL_MAX:
        return torch.arange(count)
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:REAL_MAX].sort().values


def dataset_source(spec: str, resolution: int | None, seed: int) -> Source:
    from .. import data

    name = spec.partition(":")[2]
    if not name or name in data.TOY:
        raise ValueError(f"source: {spec!r} must name an image dataset, e.g. data:digits")
    dataset = data.get_dataset(name, resolution=resolution)
    images = real_images(dataset, REAL_MAX, seed)
    return Source(spec, "data", name, images.shape[-1], images.shape[1], _chunks(images), len(images))


def folder_source(path: str, seed: int) -> Source:
    files = sorted(os.path.join(root, f) for root, _, names in os.walk(path) for f in names
                   if f.lower().endswith(IMAGE_SUFFIXES))
    if not files:
        raise FileNotFoundError(f"source: no image files ({', '.join(IMAGE_SUFFIXES)}) under {path!r}")
    files = [files[i] for i in _subset(len(files), seed)]
    images = load_images(files)
    return Source(path, "folder", None, images.shape[-1], images.shape[1], _chunks(images), len(images))


def load_images(files: list[str]) -> torch.Tensor:
    """``[N, C, R, R]`` in [-1, 1]; grey when every file is grey, else RGB; all the first file's size.

    Pixels are scaled by the file's real bit depth: 16-bit grey PNGs (0..65535) like 8-bit files
    (0..255). A file that is no readable image (a text file named ``.png``, a truncated file) or that
    declares more pixels than ``PIL.Image.MAX_IMAGE_PIXELS`` (a decompression bomb) raises ValueError
    naming it. Files are read one at a time (one open file at any moment, whatever their number)."""
    import numpy as np

    size, pixels = None, []
    for path in files:
        values, scale, im_size = _read_image(path)
        size = size or im_size
        if size[0] != size[1]:
            raise ValueError(f"source: images must be square, {path} is {size[0]}x{size[1]}")
        if im_size != size:
            raise ValueError(f"source: {path} is {im_size[0]}x{im_size[1]}, the others {size[0]}x{size[1]}")
        pixels.append(values.astype(np.float32) * np.float32(2.0 / scale) - np.float32(1.0))
    if all(p.ndim == 2 for p in pixels):
        return torch.from_numpy(np.stack(pixels))[:, None]
    rgb = [p if p.ndim == 3 else np.repeat(p[..., None], 3, axis=-1) for p in pixels]
    return torch.from_numpy(np.stack(rgb)).permute(0, 3, 1, 2)


SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # Pillow's modes of 16-bit grey PNGs


def _read_image(path: str):
    """(pixel array: [H, W] grey or [H, W, 3] RGB, full-scale value, size) of one image file; ValueError naming it
    when unreadable."""
    import warnings

    import numpy as np
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.mode in SIXTEEN_BIT_MODES:
                    values = np.asarray(im, dtype=np.int64)
                    if im.format != "PNG" or values.min() < 0 or values.max() > 65535:
                        raise ValueError(f"source: {path} is a {im.format} image in mode {im.mode} with values "
                                         f"outside 16 bits; only 8- and 16-bit images are read")
                    return values, 65535.0, im.size
                grey = im.mode in ("L", "1")
                return np.asarray(im.convert("L" if grey else "RGB")), 255.0, im.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ValueError(f"source: {path} is refused as a possible decompression bomb ({exc})") from None
    except (OSError, SyntaxError) as exc:  # UnidentifiedImageError, a truncated or corrupt file
        raise ValueError(f"source: {path} is not a readable image ({type(exc).__name__}: {exc})") from None


def run_source(run, seed: int) -> Source:
    """Samples of an opened run's EMA generator (a :class:`fastreg.train.runs.Run`) from latents of ``seed``."""
    c, path = run.config, run.path
    if len(run.shape) != 3:
        raise ValueError(f"source: run {path} trains on {c.data} ({run.shape}), not on images")

    def batches(count: int) -> Iterator[torch.Tensor]:
        latents = torch.randn(count, c.z_dim, generator=torch.Generator().manual_seed(seed))
        for z in latents.split(BATCH):
            yield run.sample(z).float().cpu()

    return Source(path, "run", c.data, run.shape[-1], run.shape[0], batches)


def conform(images: torch.Tensor, channels: int, resolution: int) -> torch.Tensor:
    """``images`` with ``channels`` channels (grey repeated, RGB averaged) at ``resolution``."""
    from ..data.images import resize

    if images.shape[1] != channels:
        images = images.mean(1, keepdim=True) if channels == 1 else images.expand(-1, channels, -1, -1)
    return resize(images, resolution)


def embed(source: Source, extractor: FeatureExtractor, count: int, channels: int,
          resolution: int) -> tuple[GaussianStats, torch.Tensor]:
    """Gaussian fit and float32 features of ``count`` images of ``source`` (all of a finite one).

    A bar on a terminal, and one line when done on stdout when it is not one: a large network on a CPU takes
    minutes (the pytorch-fid Inception embedded 5,000 digits in about 20 min on one thread of a shared 2-core CPU).
    """
    stats, features, start = GaussianStats(), [], time.perf_counter()
    what = f"{extractor.name} features of {source.label}"
    with torch.no_grad(), bar(total=count, desc=what, unit="image", leave=False) as progress:
        for batch in source.batches(count):
            f = extractor(conform(batch, channels, resolution))
            stats.update(f)
            features.append(f.float())
            progress.update(len(batch))
    plain_line(f"fastreg: {what}: {stats.count} images ({time.perf_counter() - start:.1f} s)")
    return stats, torch.cat(features)


def compare(a: Source, b: Source, extractor: str = "auto", samples: int = 1000, device: str = "cpu",
            seed: int = 0, kid_subsets: int = EVAL_KID_SUBSETS) -> dict:
    """FID and KID between sources ``a`` and ``b``; keys name the extractor (``fid/<name>`` ...).

    The extractor ``auto`` / ``classifier`` is the classifier of whichever side names a dataset;
    the images go to ``a``'s resolution and channels (``b``'s when ``a`` is a folder).
    """
    data = a.data or b.data
    if data is None and extractor in ("auto", "classifier"):
        raise ValueError("extractor: neither source names a dataset; pass --extractor classifier:<dataset> "
                         "or inception:<weights file>")
    shape_from = b if a.kind == "folder" and b.kind != "folder" else a
    channels, resolution = shape_from.channels, shape_from.resolution
    features = make_extractor(extractor, data, resolution, device)
    counts = [s.size if s.size is not None else samples for s in (a, b)]
    (stats_a, feats_a), (stats_b, feats_b) = (embed(s, features, n, channels, resolution)
                                              for s, n in zip((a, b), counts))
    fid = stats_frechet(stats_a, stats_b)
    spread = kid(feats_a, feats_b, subsets=kid_subsets, generator=torch.Generator().manual_seed(seed))
    name = features.name
    result = {"a": a.label, "b": b.label, "samples_a": stats_a.count, "samples_b": stats_b.count,
              "extractor": name, "resolution": resolution,
              f"fid/{name}": fid.distance, f"fid_residue/{name}": fid.imaginary_residue,
              f"kid/{name}": spread.mean, f"kid_std/{name}": spread.std}
    classifier = getattr(features, "classifier", None)
    if classifier is not None:  # how good the features are travels with every FID they give
        result[f"classifier_accuracy/{name}"] = classifier.held_out_accuracy
    return result
