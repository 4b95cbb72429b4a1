"""Which implementation runs fastreg's ops: the compiled kernels or the reference.

``set_backend("native")`` (the default) runs the C++/CUDA kernels registered
as ``torch.ops.fastreg.*``; ``set_backend("reference")`` runs the plain-PyTorch
reference of ``fastreg.reference``. The environment variable
``FASTREG_BACKEND`` sets the initial choice. If the native backend is chosen
but no kernel exists for a tensor's device (extension not built, or built
without CUDA), the op falls back to the reference and warns once.
"""

from __future__ import annotations

import os
import platform
import warnings

import torch

BACKENDS = ("native", "reference")

try:
    from . import _C  # noqa: F401  (loading the library registers torch.ops.fastreg.*)
    _LOAD_ERROR: str | None = None
except ImportError as exc:  # pure-Python install (FASTREG_NO_EXT=1) or a broken build
    _C = None
    _LOAD_ERROR = str(exc)


def _initial_backend() -> str:
    name = os.environ.get("FASTREG_BACKEND", "native").strip().lower() or "native"
    if name not in BACKENDS:
        raise ValueError(f"FASTREG_BACKEND must be one of {BACKENDS}, got {name!r}")
    return name


_backend = _initial_backend()
_warned: set[str] = set()


def set_backend(name: str) -> None:
    """Select ``"native"`` (compiled kernels) or ``"reference"`` (plain PyTorch) for every op."""
    global _backend
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    _backend = name


def get_backend() -> str:
    """The backend chosen with set_backend or FASTREG_BACKEND."""
    return _backend


def extension_loaded() -> bool:
    """True when the compiled library fastreg._C was imported."""
    return _C is not None


def cuda_kernels_compiled() -> bool:
    """True when the compiled library holds the CUDA kernels."""
    return _C is not None and bool(_C.with_cuda)


def has_kernel(device_type: str) -> bool:
    """True when a compiled kernel exists for tensors on ``device_type``."""
    if device_type == "cpu":
        return extension_loaded()
    if device_type == "cuda":
        return cuda_kernels_compiled()
    return False


def use_native(device: torch.device) -> bool:
    """Whether ops on ``device`` run the compiled kernels; warns once per device on fallback."""
    if _backend == "reference":
        return False
    if has_kernel(device.type):
        return True
    if device.type not in _warned:
        _warned.add(device.type)
        why = _LOAD_ERROR if _C is None else f"fastreg was built without {device.type} kernels"
        warnings.warn(f"fastreg: no compiled kernel for {device.type} tensors ({why}); "
                      "falling back to the PyTorch reference", stacklevel=3)
    return False


def backend_info() -> dict:
    """What was compiled and what is in use.

    Keys: ``backend`` (in use), ``extension`` (compiled library loaded), ``cpu``
    and ``cuda`` (kernels compiled), ``cuda_archs`` (TORCH_CUDA_ARCH_LIST of the
    build), ``load_error`` (why the library did not load, else None), ``torch``.
    """
    return {
        "backend": _backend,
        "extension": extension_loaded(),
        "cpu": has_kernel("cpu"),
        "cuda": cuda_kernels_compiled(),
        "cuda_archs": _C.cuda_archs if cuda_kernels_compiled() else "",
        "load_error": _LOAD_ERROR,
        "torch": torch.__version__,
    }


def device_tag() -> str:
    """A file-name-safe name of the device benchmarks run on (GPU name, else CPU model)."""
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
    else:
        name = _cpu_model() or platform.machine()
        name = f"cpu-{os.cpu_count()}core-{name}"
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip("-")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""
