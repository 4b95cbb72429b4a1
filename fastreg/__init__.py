"""fastreg: stable, fast GAN training.

Fused regularizer ops (``fastreg.ops``) with C++/CUDA kernels and a PyTorch
reference, selected with :func:`set_backend`; see :func:`backend_info`.
"""

from . import divergences, ops, reference
from .backend import backend_info, get_backend, set_backend
from .ops import gaussian_noise, grad_penalty, random_interpolate

__version__ = "0.1.0"

__all__ = ["backend_info", "divergences", "gaussian_noise", "get_backend", "grad_penalty", "ops", "random_interpolate",
           "reference", "set_backend"]
