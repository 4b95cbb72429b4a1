"""grad_penalty forward+backward: native kernel vs reference vs torch.compile(reference).

Run with `make bench`; ratios are read from one run's JSON (benchmarks/report.py).
"""

import pytest
import torch

import fastreg
from fastreg import reference

from conftest import synchronized

SHAPES = [(64, 3, 32, 32), (128, 3, 32, 32), (128, 3, 64, 64)]
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
_compiled_reference = {}


def compiled_reference():
    if "fn" not in _compiled_reference:
        _compiled_reference["fn"] = torch.compile(reference.grad_penalty, dynamic=False)
    return _compiled_reference["fn"]


IMPLEMENTATIONS = {
    "native": lambda: fastreg.grad_penalty,
    "reference": lambda: reference.grad_penalty,
    "compiled_reference": compiled_reference,
}


def forward_backward(penalty, g, v):
    value = penalty(g, v, weight="roth_js", num_real=g.shape[0] // 2, norm="sq")
    return torch.autograd.grad(value, (g, v))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_grad_penalty_forward_backward(benchmark, shape, impl, device):
    benchmark.group = f"grad_penalty fwd+bwd {'x'.join(map(str, shape))} float32 {device}"
    benchmark.extra_info.update(op="grad_penalty", shape=list(shape), impl=impl, device=device,
                                bytes_moved=4 * 4 * torch.Size(shape).numel())  # fwd read, bwd read+read+write
    g = torch.randn(shape, device=device).requires_grad_()
    v = torch.randn(shape[0], device=device).requires_grad_()
    penalty = IMPLEMENTATIONS[impl]()
    for _ in range(3):  # warm-up (and compilation)
        forward_backward(penalty, g, v)
    benchmark(synchronized(lambda: forward_backward(penalty, g, v), device))
