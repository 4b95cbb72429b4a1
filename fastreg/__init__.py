"""fastreg: stable, fast GAN training.

Fused regularizer ops (``fastreg.ops``) with C++/CUDA kernels and a PyTorch
reference (``fastreg.reference``, that is ``fastreg.ops.reference``), selected with
:func:`set_backend`; see :func:`backend_info`.

The library layer for your own training loop: ``fastreg.losses`` (D and G losses
of every variant), ``fastreg.regularizers`` (Roth's regularizer, gradient
penalties, instance noise), ``fastreg.schedules``, ``fastreg.models`` and
``fastreg.data``.
"""

from . import data, divergences, losses, models, ops, regularizers, schedules
from .ops import backend as backend  # fastreg.backend: set_backend's module (has_kernel, device_tag, ...)
from .ops import reference
from .ops import gaussian_noise, grad_penalty, random_interpolate
from .ops.backend import backend_info, get_backend, set_backend

__version__ = "0.1.0"

__all__ = ["backend_info", "data", "divergences", "gaussian_noise", "get_backend", "grad_penalty", "losses",
           "models", "ops", "random_interpolate", "reference", "regularizers", "schedules", "set_backend"]
