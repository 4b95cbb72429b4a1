"""Which implementation runs fastreg's ops: the compiled kernels or the reference.

``set_backend("native")`` (the default) runs the C++/CUDA kernels registered
as ``torch.ops.fastreg.*``; ``set_backend("reference")`` runs the plain-PyTorch
reference of ``fastreg.ops.reference``. The environment variable
``FASTREG_BACKEND`` sets the initial choice. A pure-Python install
(``FASTREG_NO_EXT=1``, no compiled library in the package) starts on the
reference; otherwise the default is native. If the native backend is chosen
but no kernel exists for a tensor's device (extension not built or not
loadable, or built without CUDA), the op falls back to the reference and warns
once. Contracts: docs/design.md section 8.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import warnings

import torch

BACKENDS = ("native", "reference")

NOT_BUILT = ("fastreg was installed without its compiled extension (a pure-Python build, e.g. FASTREG_NO_EXT=1); "
             "every op runs the PyTorch reference")


def _library_is_built() -> bool:
    """True when the compiled library lies in this package's folder.

    A pure-Python install has no fastreg._C at all; importing it anyway would fail with a misleading
    "partially initialized module (circular import)" message, so look for the file first. Only a
    library beside this file counts (an editable install elsewhere in the environment could map one in).
    """
    spec = importlib.util.find_spec("fastreg._C")
    here = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))  # fastreg/, the folder above ops/
    return spec is not None and bool(spec.origin) and os.path.dirname(os.path.realpath(spec.origin)) == here


_BUILT = _library_is_built()
_C = None
_LOAD_ERROR: str | None = None
if _BUILT:
    try:
        from .. import _C  # loading the library registers torch.ops.fastreg.*
    except ImportError as exc:  # a broken build: the library is there but does not load
        _LOAD_ERROR = f"fastreg._C did not load: {exc}"


def _initial_backend() -> str:
    default = "native" if _BUILT else "reference"
    name = os.environ.get("FASTREG_BACKEND", default).strip().lower() or default
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


@contextlib.contextmanager
def use_backend(name: str):
    """``with use_backend("reference"): ...`` runs the block on ``name`` and restores the previous backend
    afterwards, also when the block raises."""
    previous = get_backend()
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)


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
        if _C is None:
            why = _LOAD_ERROR or NOT_BUILT
        else:
            why = f"fastreg was built without {device.type} kernels"
        warnings.warn(f"fastreg: no compiled kernel for {device.type} tensors ({why}); "
                      "falling back to the PyTorch reference", stacklevel=3)
    return False


def cuda_kernels_usable() -> bool:
    """True when CUDA kernels were compiled and a GPU is visible to torch, so they can run."""
    return cuda_kernels_compiled() and torch.cuda.is_available()


def backend_info() -> dict:
    """What was compiled, what can run here, and what is in use.

    Keys: ``backend`` (the backend in use), ``extension_built`` (the package holds the compiled
    library; False for a pure-Python install), ``extension`` (the library loaded), ``cpu`` (CPU
    kernels compiled), ``cuda_compiled`` (CUDA kernels compiled), ``cuda_usable`` (compiled *and*
    a GPU is visible, so they can run), ``cuda_archs`` (TORCH_CUDA_ARCH_LIST of the build),
    ``load_error`` (why a built library did not load, else None), ``note`` (one line saying how ops
    run), ``torch``.
    """
    return {
        "backend": _backend,
        "extension_built": _BUILT,
        "extension": extension_loaded(),
        "cpu": has_kernel("cpu"),
        "cuda_compiled": cuda_kernels_compiled(),
        "cuda_usable": cuda_kernels_usable(),
        "cuda_archs": _C.cuda_archs if cuda_kernels_compiled() else "",
        "load_error": _LOAD_ERROR,
        "note": describe(),
        "torch": torch.__version__,
    }


def describe() -> str:
    """One line on the build and the backend, e.g. for ``fastreg --version``."""
    if not _BUILT:
        kernels = "no compiled kernels (pure-Python build)"
    elif _C is None:
        kernels = f"compiled library present but not loadable ({_LOAD_ERROR})"
    elif cuda_kernels_compiled():
        gpu = "usable" if torch.cuda.is_available() else "not usable here: no GPU visible"
        kernels = f"CPU kernels; CUDA kernels for {_C.cuda_archs} ({gpu})"
    else:
        kernels = "CPU kernels (built without CUDA)"
    return f"backend {_backend}; {kernels}; torch {torch.__version__}"


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
