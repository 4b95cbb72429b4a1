"""In-memory image datasets, and scikit-learn's bundled digits.

``digits`` is the default image dataset of fastreg (demo, tests, quick experiments): the 1,797
real 8x8 handwritten digits that ship with scikit-learn (Alpaydin & Kaynak's UCI optdigits test
set), no download. Pixels (0..16) are scaled to [-1, 1] and bilinearly resized to the requested
resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset


def images_at(dataset, index: torch.Tensor) -> torch.Tensor:
    """The images ``[len(index), C, R, R]`` of an image dataset at ``index``: one gather from its ``images``
    tensor where it holds one (:class:`ImageTensorDataset`), else a stack of ``dataset[i][0]`` (any dataset that
    yields ``(image, label)``, e.g. torchvision's)."""
    images = getattr(dataset, "images", None)
    if isinstance(images, torch.Tensor):
        return images[index]
    return torch.stack([dataset[int(i)][0] for i in index])


class ImageTensorDataset(Dataset):
    """Images ``[N, C, H, W]`` in [-1, 1] and integer labels ``[N]``, held in memory.

    ``dataset[i]`` is ``(image, label)``; ``images`` and ``labels`` give the whole tensors.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        if images.dim() != 4 or labels.shape != (images.shape[0],):
            raise ValueError(f"ImageTensorDataset: images must be [N, C, H, W] and labels [N], got "
                             f"{tuple(images.shape)} and {tuple(labels.shape)}")
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index):
        return self.images[index], self.labels[index]

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def resolution(self) -> int:
        return self.images.shape[2]

    def __repr__(self) -> str:
        return f"ImageTensorDataset(n={len(self)}, channels={self.channels}, resolution={self.resolution})"


def resize(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Bilinear resize of ``[N, C, H, W]`` to ``resolution`` (antialiased when shrinking)."""
    if images.shape[-1] == resolution and images.shape[-2] == resolution:
        return images
    shrink = resolution < max(images.shape[-2:])
    return F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False,
                         antialias=shrink)


def load_digits(resolution: int | None = None) -> ImageTensorDataset:
    """scikit-learn's 8x8 digits as ``[1797, 1, R, R]`` images in [-1, 1] with labels 0..9."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError as exc:
        raise ImportError("the 'digits' dataset needs scikit-learn: pip install scikit-learn") from exc
    raw = sklearn_digits()
    images = torch.tensor(raw.images, dtype=torch.float32)[:, None] * (2.0 / 16.0) - 1.0
    images = resize(images, resolution) if resolution is not None else images
    return ImageTensorDataset(images.clamp_(-1.0, 1.0), torch.tensor(raw.target, dtype=torch.long))
