"""gaussian_noise and random_interpolate forward: native kernel vs reference vs torch.compile(reference).

The reference of gaussian_noise is ``x + sigma * torch.randn_like(x)``; that of
random_interpolate draws ``torch.rand(B)`` and forms ``eps*x_real + (1-eps)*x_fake``.
Run with `make bench`; ratios are read from one run's JSON (benchmarks/report.py).
"""

import pytest
import torch

import fastreg
from fastreg import reference

from conftest import synchronized

SHAPES = [(128, 3, 32, 32), (128, 3, 64, 64)]
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
SIGMA = 0.1
_compiled = {}


def compiled(fn):
    if fn not in _compiled:
        _compiled[fn] = torch.compile(fn, dynamic=False)
    return _compiled[fn]


NOISE = {
    "native": lambda: fastreg.gaussian_noise,
    "reference": lambda: reference.gaussian_noise,
    "compiled_reference": lambda: compiled(reference.gaussian_noise),
}
INTERPOLATE = {
    "native": lambda: fastreg.random_interpolate,
    "reference": lambda: reference.random_interpolate,
    "compiled_reference": lambda: compiled(reference.random_interpolate),
}


def shape_id(shape):
    return "x".join(map(str, shape))


def run_benchmark(benchmark, fn, device):
    for _ in range(3):  # warm-up (and compilation)
        fn()
    benchmark(synchronized(fn, device))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", list(NOISE))
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_gaussian_noise(benchmark, shape, impl, device):
    benchmark.group = f"gaussian_noise {shape_id(shape)} float32 {device}"
    benchmark.extra_info.update(op="gaussian_noise", shape=list(shape), impl=impl, device=device,
                                bytes_moved=2 * 4 * torch.Size(shape).numel())  # read x, write out
    x = torch.randn(shape, device=device)
    noise = NOISE[impl]()
    run_benchmark(benchmark, lambda: noise(x, SIGMA), device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", list(INTERPOLATE))
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_random_interpolate(benchmark, shape, impl, device):
    benchmark.group = f"random_interpolate {shape_id(shape)} float32 {device}"
    benchmark.extra_info.update(op="random_interpolate", shape=list(shape), impl=impl, device=device,
                                bytes_moved=3 * 4 * torch.Size(shape).numel())  # read both, write out
    x_real = torch.randn(shape, device=device)
    x_fake = torch.randn(shape, device=device)
    interpolate = INTERPOLATE[impl]()
    run_benchmark(benchmark, lambda: interpolate(x_real, x_fake), device)
