"""torchvision datasets from a local root, as images in [-1, 1].

MNIST, Fashion-MNIST, CIFAR-10, CelebA, LSUN, ImageFolder, and Color-MNIST (three MNIST digits
stacked as R, G, B: the 1,000-mode "stacked MNIST" of Metz et al. 2017, "Unrolled Generative
Adversarial Networks"). Nothing is downloaded unless ``download=True`` is passed; a missing
dataset raises :class:`DatasetNotFoundError`, which says where it looked and how to get the data.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils.data import Dataset


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not under the given root."""


class DatasetDecodeError(ValueError):
    """A dataset's files are there but do not decode (e.g. IDX files of random bytes); the message names the file."""


@dataclass(frozen=True)
class Source:
    """Where a torchvision dataset lives under ``root`` and how to get it."""

    title: str
    looks_in: str      # relative to root
    files: str
    how_to_get: str

    def not_found(self, root: str, name: str, cause: Exception) -> DatasetNotFoundError:
        where = os.path.join(root, self.looks_in) if self.looks_in else root
        return DatasetNotFoundError(
            f"{self.title} not found: looked in {where} for {self.files}. {self.how_to_get} "
            f"(root={root!r}; to look elsewhere give --data-root on the command line, root= in Python, or set "
            f"FASTREG_DATA). torchvision said: {cause}")


def _download_hint(name: str) -> str:
    return (f"Get it with --download (fastreg train / fastreg experiment; in Python "
            f"fastreg.data.get_dataset({name!r}, root=..., download=True)), or copy the files there.")


SOURCES = {
    "mnist": Source("MNIST", os.path.join("MNIST", "raw"),
                    "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte",
                    _download_hint("mnist")),
    "fashion-mnist": Source("Fashion-MNIST", os.path.join("FashionMNIST", "raw"),
                            "the four IDX files as for MNIST", _download_hint("fashion-mnist")),
    "cifar10": Source("CIFAR-10", "cifar-10-batches-py", "data_batch_1..5, test_batch, batches.meta",
                      _download_hint("cifar10")),
    "celeba": Source("CelebA", "celeba",
                     "img_align_celeba/, list_attr_celeba.txt, identity_CelebA.txt, list_bbox_celeba.txt, "
                     "list_landmarks_align_celeba.txt, list_eval_partition.txt",
                     _download_hint("celeba") + " (Google Drive often refuses automated downloads; "
                     "the files are at mmlab.ie.cuhk.edu.hk/projects/CelebA.html)"),
    "lsun": Source("LSUN", "", "<category>_train_lmdb/",
                   "torchvision cannot download LSUN: fetch it with the LSUN download script "
                   "(github.com/fyu/lsun) and unzip it there; reading it needs `pip install lmdb`."),
    "imagefolder": Source("ImageFolder", "", "one sub-folder of images per class",
                          "Point root at a folder that holds one sub-folder per class."),
}
SOURCES["color-mnist"] = SOURCES["mnist"]


def default_root() -> str:
    """``$FASTREG_DATA``, else ``./data``, as an absolute path."""
    return os.path.abspath(os.path.expanduser(os.environ.get("FASTREG_DATA", "data")))


def image_transform(resolution: int | None, channels: int, crop: int | None = None):
    """(center crop) -> resize + center crop to ``resolution`` -> tensor in [-1, 1]."""
    from torchvision import transforms as T

    steps = [T.CenterCrop(crop)] if crop else []
    if resolution is not None:
        steps += [T.Resize(resolution), T.CenterCrop(resolution)]
    steps += [T.ToTensor(), T.Normalize([0.5] * channels, [0.5] * channels)]
    return T.Compose(steps)


def open_dataset(name: str, root: str, download: bool, build: Callable[[], Dataset]) -> Dataset:
    """``build()``, turning torchvision's not-found errors into :class:`DatasetNotFoundError`."""
    try:
        return build()
    except (AssertionError, ValueError, IndexError, EOFError, struct.error, UnicodeDecodeError) as exc:
        # torchvision's readers assert on a file's header (MNIST's IDX magic numbers and sizes)
        where = _file_being_read(exc.__traceback__) or os.path.join(root, SOURCES[name].looks_in)
        detail = str(exc).strip().splitlines()
        raise DatasetDecodeError(f"{SOURCES[name].title}: {where} does not decode as {SOURCES[name].files} "
                                 f"({type(exc).__name__}{': ' + detail[0] if detail else ''}); replace it with "
                                 f"the original file") from None
    except (RuntimeError, OSError) as exc:
        if download or isinstance(exc, DatasetNotFoundError):
            raise
        raise SOURCES[name].not_found(root, name, exc) from exc


def _file_being_read(traceback) -> str | None:
    """The innermost ``path`` (a string naming an existing file) among the failing frames' locals."""
    found = None
    while traceback is not None:
        path = traceback.tb_frame.f_locals.get("path")
        if isinstance(path, str) and os.path.isfile(path):
            found = path
        traceback = traceback.tb_next
    return found


def mnist(root: str, resolution: int | None, download: bool, *, train: bool = True) -> Dataset:
    """MNIST (LeCun et al. 1998), 28x28 gray, labels 0..9."""
    from torchvision.datasets import MNIST
    return open_dataset("mnist", root, download,
                        lambda: MNIST(root, train=train, transform=image_transform(resolution, 1), download=download))


def fashion_mnist(root: str, resolution: int | None, download: bool, *, train: bool = True) -> Dataset:
    """Fashion-MNIST (Xiao et al. 2017), 28x28 gray, labels 0..9."""
    from torchvision.datasets import FashionMNIST
    return open_dataset("fashion-mnist", root, download,
                        lambda: FashionMNIST(root, train=train, transform=image_transform(resolution, 1),
                                             download=download))


def cifar10(root: str, resolution: int | None, download: bool, *, train: bool = True) -> Dataset:
    """CIFAR-10 (Krizhevsky 2009), 32x32 RGB, labels 0..9."""
    from torchvision.datasets import CIFAR10
    return open_dataset("cifar10", root, download,
                        lambda: CIFAR10(root, train=train, transform=image_transform(resolution, 3),
                                        download=download))


def celeba(root: str, resolution: int | None, download: bool, *, split: str = "train") -> Dataset:
    """CelebA (Liu et al. 2015), aligned faces center-cropped to 178x178 and resized (default 64)."""
    from torchvision.datasets import CelebA
    transform = image_transform(64 if resolution is None else resolution, 3, crop=178)
    return open_dataset("celeba", root, download,
                        lambda: CelebA(root, split=split, target_type="attr", transform=transform, download=download))


def lsun(root: str, resolution: int | None, download: bool, *, category: str = "bedroom") -> Dataset:
    """LSUN (Yu et al. 2015) ``<category>_train``, resized and center-cropped (default 64)."""
    if download:
        raise ValueError("lsun: download=True is not supported; " + SOURCES["lsun"].how_to_get)
    from torchvision.datasets import LSUN
    transform = image_transform(64 if resolution is None else resolution, 3)

    def build():
        try:
            return LSUN(root, classes=[f"{category}_train"], transform=transform)
        except ImportError as exc:
            raise ImportError("LSUN needs the lmdb package: pip install lmdb") from exc
    return open_dataset("lsun", root, download, build)


def image_folder(root: str, resolution: int | None, download: bool) -> Dataset:
    """Any folder with one sub-folder of images per class, as RGB (default resolution 64)."""
    if download:
        raise ValueError("imagefolder: download=True makes no sense for a local folder")
    from torchvision.datasets import ImageFolder
    transform = image_transform(64 if resolution is None else resolution, 3)
    return open_dataset("imagefolder", root, download, lambda: ImageFolder(root, transform=transform))


class ColorMNIST(Dataset):
    """Three MNIST digits stacked as the R, G and B channels (Metz et al. 2017's stacked MNIST).

    Item ``i`` stacks the digits ``index[i] = (a, b, c)``, drawn once from a generator seeded with
    ``seed``; its label is ``100 * label_a + 10 * label_b + label_c`` (1,000 classes). ``length``
    defaults to the MNIST split's size.
    """

    def __init__(self, digits: Dataset, length: int | None = None, seed: int = 0):
        n = len(digits)
        length = n if length is None else length
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise ValueError(f"ColorMNIST: length must be a positive int, got {length!r}")
        self.digits = digits
        self.index = torch.randint(n, (length, 3), generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return self.index.shape[0]

    def __getitem__(self, i):
        items = [self.digits[int(j)] for j in self.index[i]]
        image = torch.cat([img for img, _ in items], dim=0)
        label = 100 * int(items[0][1]) + 10 * int(items[1][1]) + int(items[2][1])
        return image, label


def color_mnist(root: str, resolution: int | None, download: bool, *, train: bool = True,
                length: int | None = None, seed: int = 0) -> Dataset:
    """Color-MNIST from the MNIST files under ``root``."""
    return ColorMNIST(mnist(root, resolution, download, train=train), length=length, seed=seed)
