"""The installed package must run compiled kernels, not the fallback."""

import os
import shutil
import subprocess
import sys

import pytest
import torch

import fastreg
from fastreg import backend

PURE_PYTHON = os.environ.get("FASTREG_NO_EXT") == "1"


@pytest.mark.skipif(PURE_PYTHON, reason="FASTREG_NO_EXT=1 asked for a pure-Python install")
def test_compiled_extension_is_loaded():
    info = fastreg.backend_info()
    assert info["extension"], f"fastreg._C did not load: {info['load_error']}"
    assert info["cpu"]
    for op in ("grad_penalty", "gaussian_noise", "random_interpolate"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"fastreg::{op}", "CPU"), op


@pytest.mark.skipif(PURE_PYTHON or shutil.which("nvcc") is None, reason="no nvcc: CUDA kernels are not expected")
def test_cuda_kernels_compiled_where_nvcc_exists():
    info = fastreg.backend_info()
    assert info["cuda_compiled"], "nvcc is on PATH but fastreg was built without its CUDA kernels"
    assert "9.0" in info["cuda_archs"] or os.environ.get("TORCH_CUDA_ARCH_LIST")
    for op in ("grad_penalty", "gaussian_noise", "random_interpolate"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"fastreg::{op}", "CUDA"), op


def test_backend_switch_routes_to_reference(monkeypatch):
    calls = []
    original = fastreg.reference.grad_penalty
    monkeypatch.setattr(fastreg.reference, "grad_penalty", lambda *a, **k: calls.append(1) or original(*a, **k))
    g = torch.randn(4, 3)
    fastreg.grad_penalty(g)
    assert calls == []
    fastreg.set_backend("reference")
    assert fastreg.backend_info()["backend"] == "reference"
    fastreg.grad_penalty(g)
    assert calls == [1]
    with pytest.raises(ValueError, match="backend"):
        fastreg.set_backend("fast")


def test_use_backend_restores_the_previous_backend_also_on_an_error():
    assert fastreg.get_backend() == "native"
    with backend.use_backend("reference"):
        assert fastreg.get_backend() == "reference"
    assert fastreg.get_backend() == "native"
    with pytest.raises(RuntimeError, match="inside"):
        with backend.use_backend("reference"):
            raise RuntimeError("inside")
    assert fastreg.get_backend() == "native"
    with pytest.raises(ValueError, match="backend must be one of"):
        with backend.use_backend("fast"):
            pass
    assert fastreg.get_backend() == "native"


def test_environment_variable_selects_backend():
    code = "import fastreg; print(fastreg.get_backend())"
    env = dict(os.environ, FASTREG_BACKEND="reference")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "reference"
    env["FASTREG_BACKEND"] = "bogus"
    bad = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "FASTREG_BACKEND" in bad.stderr


def test_missing_kernel_falls_back_with_one_warning(monkeypatch):
    monkeypatch.setattr(backend, "_C", None)
    monkeypatch.setattr(backend, "_LOAD_ERROR", "simulated missing build")
    monkeypatch.setattr(backend, "_warned", set())
    g = torch.randn(5, 4, dtype=torch.float64)
    with pytest.warns(UserWarning, match="falling back to the PyTorch reference"):
        value = fastreg.grad_penalty(g)
    torch.testing.assert_close(value, g.pow(2).sum() / 5)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fastreg.grad_penalty(g)  # second call: no second warning
