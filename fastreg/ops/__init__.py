"""The fused ops, laid out like ``csrc/``: :mod:`.grad_penalty` and :mod:`.random_ops` (public wrapper,
fake kernel and autograd of each op), :mod:`._checks` (the Python twin of the C++ argument checks),
:mod:`.reference` (plain PyTorch), :mod:`.backend` (which of the two runs), :mod:`.vmap` (batching
rules) and :mod:`.order` (program order of the random ops under torch.compile).

The ops live in the PyTorch dispatcher as ``torch.ops.fastreg.*`` (schemas in ``csrc/fastreg.cpp``;
CPU kernels in ``csrc/cpu/``, CUDA kernels in ``csrc/cuda/``); importing this package registers their
fake kernels, autograd formulas, batching rules and effects, so they run in eager mode, under
``torch.compile``, under torch.func transforms and inside ``autograd.grad(create_graph=True)`` graphs.
"""

from __future__ import annotations

from . import grad_penalty as _grad_penalty_module
from . import order, random_ops, vmap
from .backend import extension_loaded
from .grad_penalty import grad_penalty
from .random_ops import gaussian_noise, random_interpolate

__all__ = ["gaussian_noise", "grad_penalty", "random_interpolate"]


def _register() -> None:
    _grad_penalty_module.register()
    random_ops.register()
    vmap.register()
    order.register_effects()
    order.install_inductor_lowerings_if_loaded()


if extension_loaded():
    _register()
