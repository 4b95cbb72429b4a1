"""fastreg.ops.grad_penalty: kernels against the reference, gradients, compile, errors."""

import math

import pytest
import torch
import torch.nn as nn

import fastreg
from fastreg import reference
from fastreg.divergences import DIVERGENCES

WEIGHTS = ["one", "roth_js"] + [f"f:{d}" for d in DIVERGENCES]
NORMS = ["sq", "gp", "gp_one_sided"]
# (rtol, atol) per dtype; half types accumulate in float32 but round inputs/outputs.
TOLERANCES = {
    torch.float64: (1e-10, 1e-12),
    torch.float32: (1e-5, 1e-6),
    torch.float16: (2e-2, 1e-3),
    torch.bfloat16: (5e-2, 1e-2),
}
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def make_inputs(shape, dtype, device="cpu", scale=0.4, contiguous=True):
    """Gradient rows of assorted norms (one exactly zero) and moderate logits."""
    if contiguous:
        g = torch.randn(shape, dtype=torch.float64) * scale
    else:  # a strided view: every other element of the last dimension
        g = (torch.randn(*shape[:-1], 2 * shape[-1], dtype=torch.float64) * scale)[..., ::2]
    if shape[0] > 2:
        g[1] = 0.0
        g[2] *= 4.0  # a row above target 1 for the gp norms
    v = (torch.randn(2 * shape[0], dtype=torch.float64) * 2)[::2]
    if contiguous:
        v = v.contiguous()
    else:
        assert not g.is_contiguous() and (shape[0] == 1 or not v.is_contiguous())
    return g.to(device=device, dtype=dtype), v.to(device=device, dtype=dtype)


def value_and_grads(fn, g, v, **kwargs):
    g = g.detach().requires_grad_()
    v = v.detach().requires_grad_()
    value = fn(g, v, **kwargs)
    d_g, d_v = torch.autograd.grad(value, (g, v), allow_unused=True, materialize_grads=True)
    return value.detach(), d_g, d_v


def assert_matches_reference(g, v, **kwargs):
    native = value_and_grads(fastreg.grad_penalty, g, v, **kwargs)
    ref = value_and_grads(reference.grad_penalty, g, v, **kwargs)
    rtol, atol = TOLERANCES[g.dtype]
    for name, a, b in zip(("value", "d/dgrad", "d/dlogits"), native, ref):
        torch.testing.assert_close(a.double(), b.double(), rtol=rtol, atol=atol, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", list(TOLERANCES), ids=str)
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("weight", WEIGHTS)
def test_native_matches_reference(weight, norm, dtype, device):
    g, v = make_inputs((8, 3, 5, 5), dtype, device)
    assert_matches_reference(g, v, weight=weight, num_real=4, norm=norm, target=1.0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(1, 7), (6, 10), (5, 3, 4, 4), (4, 2, 33)], ids=str)
@pytest.mark.parametrize("contiguous", [True, False], ids=["contiguous", "strided"])
@pytest.mark.parametrize("weight", ["one", "roth_js", "f:kl"])
def test_shapes_layouts_and_num_real(weight, contiguous, shape, device):
    g, v = make_inputs(shape, torch.float64, device, contiguous=contiguous)
    rows = shape[0]
    for num_real in sorted({0, rows // 2, rows}):
        for norm in NORMS:
            assert_matches_reference(g, v, weight=weight, num_real=num_real, norm=norm, target=0.5)


def test_float32_large_rows_accumulate_accurately():
    g = torch.randn(4, 3, 64, 64) * 1e-2
    value = fastreg.grad_penalty(g, norm="gp")
    want = reference.grad_penalty(g.double(), norm="gp")
    torch.testing.assert_close(value.double(), want, rtol=1e-5, atol=0)


# Rows as long as a 3x1024x1024 (and, slow, 3x2048x2048) image. One float32 chain over such a row lost
# up to 1e-2 of the value; torch.sum (the reference) stays within a few 1e-7, and so must the kernels.
LONG_ROWS = [(2, 3, 1024, 1024), pytest.param((2, 3, 2048, 2048), marks=pytest.mark.slow)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", LONG_ROWS, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("fill", ["third", "randn"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_long_rows_stay_near_the_reference_error(dtype, fill, shape, device):
    torch.manual_seed(0)
    g = torch.full(shape, 1 / 3) if fill == "third" else torch.randn(shape)  # a constant is the worst case
    g = (g / 64 if dtype == torch.float16 else g).to(device=device, dtype=dtype)  # a float16 value up to 6.5e4
    exact = reference.grad_penalty(g.double(), norm="sq").item()
    assert abs(reference.grad_penalty(g.float(), norm="sq").item() - exact) / exact < 1e-6  # the reference's own
    value, row_norms = torch.ops.fastreg.grad_penalty(g, None, "one", 0, "sq", 1.0)
    exact_norms = torch.linalg.vector_norm(g.double().flatten(1), dim=1)
    assert ((row_norms.double() - exact_norms).abs() / exact_norms).max().item() < 1e-6  # float32 for both dtypes
    rounding = 1e-6 if dtype == torch.float32 else 2.0**-11  # float16: the value's own rounding (unit roundoff)
    assert abs(value.item() - exact) / exact < rounding
    gp = fastreg.grad_penalty(g, norm="gp", target=1.0).item()
    exact_gp = reference.grad_penalty(g.double(), norm="gp", target=1.0).item()
    assert abs(gp - exact_gp) / exact_gp < 2 * rounding


def test_long_batches_of_rows_sum_accurately():
    """Many rows: the sum over rows must not grow the float32 error either."""
    g = torch.full((1 << 17, 4), 0.3)
    value = fastreg.grad_penalty(g, weight="one", norm="sq").item()
    exact = reference.grad_penalty(g.double()).item()
    assert abs(value - exact) / exact < 1e-6


def test_hand_computed_values():
    g = torch.tensor([[3.0, 4.0], [0.0, 0.0]], dtype=torch.float64)
    v = torch.zeros(2, dtype=torch.float64)
    assert fastreg.grad_penalty(g).item() == pytest.approx(12.5)
    assert fastreg.grad_penalty(g, norm="gp").item() == pytest.approx(8.5)  # ((5-1)^2 + 1) / 2
    assert fastreg.grad_penalty(g, norm="gp_one_sided").item() == pytest.approx(8.0)
    # roth_js at v = 0: each weight (1/2)^2.
    assert fastreg.grad_penalty(g, v, weight="roth_js", num_real=1).item() == pytest.approx(3.125)
    # f:kl at v = 1: w = e^0 = 1.
    assert fastreg.grad_penalty(g, v + 1, weight="f:kl").item() == pytest.approx(12.5)
    # f:neyman at v = 0: w = 1/2.
    assert fastreg.grad_penalty(g, v, weight="f:neyman").item() == pytest.approx(6.25)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("weight", WEIGHTS)
def test_gradcheck_and_gradgradcheck(weight, norm):
    g = (torch.randn(5, 2, 3, dtype=torch.float64) * 0.6).requires_grad_()
    v = torch.randn(5, dtype=torch.float64).requires_grad_()

    def penalty(g, v):
        return fastreg.grad_penalty(g, v, weight=weight, num_real=2, norm=norm, target=1.0)

    assert torch.autograd.gradcheck(penalty, (g, v))
    assert torch.autograd.gradgradcheck(penalty, (g, v))


def test_zero_gradient_row_has_zero_gp_gradient():
    g = torch.zeros(3, 4, dtype=torch.float64, requires_grad=True)
    value = fastreg.grad_penalty(g, norm="gp")
    assert value.item() == pytest.approx(1.0)
    (d_g,) = torch.autograd.grad(value, g)
    assert torch.equal(d_g, torch.zeros_like(d_g))


class SmallConvD(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.Softplus(), nn.Conv2d(8, 8, 3, 2, 1), nn.Softplus(),
                                 nn.Flatten(), nn.Linear(8 * 4 * 4, 1))

    def forward(self, x):
        return self.net(x).flatten()


@pytest.mark.parametrize("weight,norm", [("roth_js", "sq"), ("f:kl", "sq"), ("one", "gp")])
def test_end_to_end_parameter_gradients_match_reference(weight, norm):
    torch.manual_seed(1)
    D = SmallConvD().double()
    x = torch.randn(6, 3, 16, 16, dtype=torch.float64)

    def parameter_grads(penalty_fn):
        xi = x.clone().requires_grad_()
        v = D(xi)
        (g,) = torch.autograd.grad(v.sum(), xi, create_graph=True)
        loss = penalty_fn(g, v, weight=weight, num_real=3, norm=norm) + 0.1 * v.mean()
        return torch.autograd.grad(loss, list(D.parameters()))

    for a, b in zip(parameter_grads(fastreg.grad_penalty), parameter_grads(reference.grad_penalty)):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_opcheck_registered_ops():
    g, v = make_inputs((6, 3, 4, 4), torch.float32)
    for weight, norm in [("one", "sq"), ("roth_js", "gp"), ("f:neyman", "gp_one_sided")]:
        args = (g.clone().requires_grad_(), v.clone().requires_grad_(), weight, 3, norm, 1.0)
        torch.library.opcheck(torch.ops.fastreg.grad_penalty.default, args)
        value, row_norms = torch.ops.fastreg.grad_penalty(*[a.detach() if torch.is_tensor(a) else a for a in args])
        bw_args = (torch.ones(()), g.clone().requires_grad_(), v.clone().requires_grad_(), row_norms,
                   weight, 3, norm, 1.0)
        torch.library.opcheck(torch.ops.fastreg._grad_penalty_backward.default, bw_args)


def test_the_backward_op_is_internal():
    """The backward op is registered with a leading underscore (internal, as torchvision names its backward
    ops); the public name is gone."""
    assert torch.ops.fastreg._grad_penalty_backward.default._schema.name == "fastreg::_grad_penalty_backward"
    assert not hasattr(torch.ops.fastreg, "grad_penalty_backward")


def test_torch_compile_fullgraph_cpu():
    torch._dynamo.reset()

    def regularized(g, v):
        return fastreg.grad_penalty(g, v, weight="roth_js", num_real=2, norm="sq") * 0.5 + v.mean()

    compiled = torch.compile(regularized, fullgraph=True)
    g, v = make_inputs((4, 3, 8, 8), torch.float32)
    gc, vc = g.clone().requires_grad_(), v.clone().requires_grad_()
    ge, ve = g.clone().requires_grad_(), v.clone().requires_grad_()
    out_c, out_e = compiled(gc, vc), regularized(ge, ve)
    torch.testing.assert_close(out_c, out_e)
    grads_c = torch.autograd.grad(out_c, (gc, vc))
    grads_e = torch.autograd.grad(out_e, (ge, ve))
    for a, b in zip(grads_c, grads_e):
        torch.testing.assert_close(a, b)


def test_nan_propagates():
    g = torch.randn(4, 5)
    g[2, 3] = float("nan")
    assert math.isnan(fastreg.grad_penalty(g).item())
    assert math.isnan(fastreg.grad_penalty(g, norm="gp_one_sided").item())
    v = torch.zeros(4)
    v[0] = float("nan")
    assert math.isnan(fastreg.grad_penalty(torch.randn(4, 5), v, weight="roth_js", num_real=2).item())


def test_overflowing_weight_is_visible():
    g = torch.ones(2, 3)
    v = torch.tensor([200.0, 0.0])
    assert math.isinf(fastreg.grad_penalty(g, v, weight="f:kl").item())


BAD_INPUTS = [
    (dict(grad=torch.randn(4, 3), logits=torch.randn(4, 1), weight="roth_js"), "logits"),
    (dict(grad=torch.randn(4, 3), logits=torch.randn(5), weight="roth_js"), "logits"),
    (dict(grad=torch.randn(4, 3), logits=torch.randn(4, dtype=torch.float64), weight="roth_js"), "dtype"),
    (dict(grad=torch.randn(4, 3), logits=None, weight="roth_js"), "logits"),
    (dict(grad=torch.randn(4, 3), logits=torch.randn(4), weight="roth_js", num_real=5), "num_real"),
    (dict(grad=torch.randn(4, 3), logits=torch.randn(4), weight="roth_js", num_real=-1), "num_real"),
    (dict(grad=torch.randn(4, 3), weight="f:tv"), "weight"),
    (dict(grad=torch.randn(4, 3), weight="wgan"), "weight"),
    (dict(grad=torch.randn(4, 3), norm="l1"), "norm"),
    (dict(grad=torch.randn(0, 3)), "empty batch"),
    (dict(grad=torch.tensor(1.0)), "batch dimension"),
    (dict(grad=torch.ones(4, 3, dtype=torch.int64)), "floating point"),
]


@pytest.mark.parametrize("kwargs,word", BAD_INPUTS, ids=[w for _, w in BAD_INPUTS])
def test_bad_input_names_the_argument(kwargs, word):
    kwargs = dict(kwargs)
    grad, logits = kwargs.pop("grad"), kwargs.pop("logits", None)
    for backend in ("native", "reference"):
        fastreg.set_backend(backend)
        with pytest.raises(ValueError, match=word):
            fastreg.grad_penalty(grad, logits, **kwargs)


@pytest.mark.parametrize("kwargs,word", BAD_INPUTS[:3] + BAD_INPUTS[4:9], ids=str)
def test_raw_op_rejects_bad_input(kwargs, word):
    kwargs = dict(kwargs)
    grad, logits = kwargs.pop("grad"), kwargs.pop("logits", None)
    with pytest.raises(ValueError, match=word):
        torch.ops.fastreg.grad_penalty(grad, logits, kwargs.get("weight", "one"), kwargs.get("num_real", 0),
                                       kwargs.get("norm", "sq"), 1.0)


@pytest.mark.parametrize("meta_input", ["grad_value", "grad", "logits", "row_norms"])
def test_backward_op_with_one_meta_input_raises(meta_input):
    """A meta tensor among CPU ones dispatches to the meta kernel, which returned uninitialized CPU memory."""
    g, v = torch.randn(4, 5), torch.randn(4)
    _, row_norms = torch.ops.fastreg.grad_penalty(g, v, "roth_js", 2, "sq", 1.0)
    args = dict(grad_value=torch.ones(()), grad=g, logits=v, row_norms=row_norms)
    args[meta_input] = args[meta_input].to("meta")
    with pytest.raises(ValueError, match=r"is on (meta but grad is on cpu|cpu but grad is on meta)"):
        torch.ops.fastreg._grad_penalty_backward(*args.values(), "roth_js", 2, "sq", 1.0)


def test_backward_op_rejects_bad_row_norms():
    g = torch.randn(4, 5)
    for row_norms in (torch.ones(3), torch.ones(4, dtype=torch.float64)):
        with pytest.raises(ValueError, match=r"row_norms must be \[B\] = \[4\] in the accumulation dtype"):
            torch.ops.fastreg._grad_penalty_backward(torch.ones(()), g, None, row_norms, "one", 0, "sq", 1.0)


@pytest.mark.cuda
def test_device_mismatch_names_logits():
    with pytest.raises(ValueError, match="logits"):
        fastreg.grad_penalty(torch.randn(4, 3, device="cuda"), torch.randn(4), weight="roth_js")


@pytest.mark.cuda
def test_cuda_end_to_end_and_no_sync():
    g, v = make_inputs((64, 3, 32, 32), torch.float32, "cuda")
    torch.cuda.set_sync_debug_mode("error")
    try:
        value, d_g, d_v = value_and_grads(fastreg.grad_penalty, g, v, weight="roth_js", num_real=32)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    ref = value_and_grads(reference.grad_penalty, g, v, weight="roth_js", num_real=32)
    torch.testing.assert_close(value, ref[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(d_g, ref[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("weight,norm", [("roth_js", "gp"), ("f:squared_hellinger", "sq"), ("one", "gp_one_sided")])
def test_registered_autograd_path_matches_eager_path(weight, norm):
    """torch.ops.fastreg.grad_penalty (the torch.library autograd that torch.compile uses) agrees with the
    public wrapper's eager path, and is itself twice differentiable."""
    g = (torch.randn(5, 2, 3, dtype=torch.float64) * 0.7).requires_grad_()
    v = torch.randn(5, dtype=torch.float64).requires_grad_()

    def registered(g, v):
        return torch.ops.fastreg.grad_penalty(g, v, weight, 2, norm, 1.0)[0]

    value = registered(g, v)
    assert type(value.grad_fn).__name__.startswith("GeneratedBackwardFor_fastreg_grad_penalty")
    grads = torch.autograd.grad(value, (g, v))
    want = torch.autograd.grad(fastreg.grad_penalty(g, v, weight=weight, num_real=2, norm=norm), (g, v))
    for a, b in zip(grads, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    assert torch.autograd.gradgradcheck(registered, (g, v))
