"""fastreg.ops.random_interpolate: uniform eps, the interpolation formula, reproducibility, gradients, errors."""

import pytest
import torch

import fastreg
from fastreg import reference

from random_checks import as_numpy, assert_no_serial_dependence, assert_standard_uniform, assert_uncorrelated

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
ALL_DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]


def eps_of_next_call(rows, device="cpu", dtype=torch.float32):
    """The eps the next call draws: interpolating ones and zeros returns eps itself."""
    ones = torch.ones(rows, 1, device=device, dtype=dtype)
    return fastreg.random_interpolate(ones, torch.zeros_like(ones))[:, 0]


def interpolate_with_seed(x_real, x_fake, seed):
    torch.manual_seed(seed)
    return fastreg.random_interpolate(x_real, x_fake)


# --- distribution and formula --------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_eps_is_standard_uniform_without_serial_dependence(dtype, device):
    eps = as_numpy(eps_of_next_call(10**6, device, dtype))
    assert_standard_uniform(eps)
    assert_no_serial_dependence(eps, rows=1000)
    assert_uncorrelated("call 1, call 2", eps, as_numpy(eps_of_next_call(10**6, device, dtype)))


@pytest.mark.parametrize("device", DEVICES)
def test_raw_op_returns_the_eps_it_used(device):
    x_real = torch.randn(9, 2, 3, device=device)
    x_fake = torch.randn(9, 2, 3, device=device)
    torch.manual_seed(4)
    out, eps = torch.ops.fastreg.random_interpolate(x_real, x_fake)
    torch.manual_seed(4)
    assert torch.equal(eps_of_next_call(9, device), eps)
    assert eps.dtype == torch.float32 and eps.shape == (9,)
    expected = eps[:, None, None] * x_real + (1 - eps[:, None, None]) * x_fake
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
def test_out_is_eps_real_plus_one_minus_eps_fake(dtype, device):
    # Rows of 7 elements: row boundaries inside vector chunks; a strided x_fake.
    x_real = torch.randn(33, 7, device=device).to(dtype)
    x_fake = torch.randn(33, 14, device=device).to(dtype)[:, ::2]
    torch.manual_seed(8)
    eps = eps_of_next_call(33, device, dtype).to(torch.float64)  # same draw as the next call's eps
    out = interpolate_with_seed(x_real, x_fake, seed=8)
    assert out.dtype == dtype and out.is_contiguous()
    expected = eps[:, None] * x_real.double() + (1 - eps[:, None]) * x_fake.double()
    tol = {torch.float64: 1e-14, torch.float32: 1e-6, torch.float16: 2e-3, torch.bfloat16: 2e-2}[dtype]
    torch.testing.assert_close(out.double(), expected, rtol=tol, atol=tol)


def test_endpoints_are_the_inputs_along_each_row():
    """(out - x_fake) / (x_real - x_fake) is one constant eps_i per row."""
    x_real = torch.randn(50, 40, dtype=torch.float64)
    x_fake = torch.randn(50, 40, dtype=torch.float64)
    ratio = (fastreg.random_interpolate(x_real, x_fake) - x_fake) / (x_real - x_fake)
    torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio), rtol=1e-9, atol=1e-9)
    assert ratio.min() >= 0 and ratio.max() < 1


# --- reproducibility ----------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
def test_same_seed_same_eps_and_every_call_fresh(device):
    x_real, x_fake = torch.zeros(256, 3, device=device), torch.ones(256, 3, device=device)
    a, b = interpolate_with_seed(x_real, x_fake, 1), interpolate_with_seed(x_real, x_fake, 1)
    assert torch.equal(a, b)
    assert (fastreg.random_interpolate(x_real, x_fake) != b).float().mean() > 0.99
    assert (interpolate_with_seed(x_real, x_fake, 2) != a).float().mean() > 0.99
    g = torch.Generator(device).manual_seed(5)
    first = fastreg.random_interpolate(x_real, x_fake, generator=g)
    same_seed = torch.Generator(device).manual_seed(5)
    assert torch.equal(first, fastreg.random_interpolate(x_real, x_fake, generator=same_seed))
    assert not torch.equal(first, fastreg.random_interpolate(x_real, x_fake, generator=g))


def test_interpolate_does_not_depend_on_thread_count():
    x_real, x_fake = torch.randn(300, 3, 33, 33), torch.randn(300, 3, 33, 33)
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            results.append(interpolate_with_seed(x_real, x_fake, 6))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(results[0], results[1]) and torch.equal(results[0], results[2])


@pytest.mark.parametrize("device", DEVICES)
def test_eps_of_a_row_depends_only_on_the_row_index(device):
    torch.manual_seed(10)
    many = eps_of_next_call(1001, device)
    for rows in (1, 5, 64):
        torch.manual_seed(10)
        assert torch.equal(eps_of_next_call(rows, device), many[:rows])


# --- gradients ---------------------------------------------------------------------------------

def test_gradcheck_and_gradgradcheck_both_inputs():
    x_real = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    x_fake = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)

    def interpolate(a, b):
        return fastreg.random_interpolate(a, b, generator=torch.Generator().manual_seed(0))

    assert torch.autograd.gradcheck(interpolate, (x_real, x_fake))
    assert torch.autograd.gradgradcheck(interpolate, (x_real, x_fake))


@pytest.mark.parametrize("path", ["wrapper", "registered_op"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_gradients_are_eps_and_one_minus_eps(path, dtype):
    x_real = torch.randn(6, 4).to(dtype).requires_grad_()
    x_fake = torch.randn(6, 4).to(dtype).requires_grad_()
    g = torch.randn(6, 4).to(dtype)
    torch.manual_seed(3)
    if path == "wrapper":
        out = fastreg.random_interpolate(x_real, x_fake)
    else:
        out, _ = torch.ops.fastreg.random_interpolate(x_real, x_fake)
    d_real, d_fake = torch.autograd.grad(out, (x_real, x_fake), g)
    torch.manual_seed(3)
    eps = eps_of_next_call(6)[:, None]
    assert d_real.dtype == dtype
    assert torch.equal(d_real, (g * eps).to(dtype)) and torch.equal(d_fake, (g * (1 - eps)).to(dtype))


def test_only_the_input_that_needs_it_gets_a_gradient():
    x_real = torch.randn(3, 2, requires_grad=True)
    out = fastreg.random_interpolate(x_real, torch.randn(3, 2))
    (d_real,) = torch.autograd.grad(out.sum(), x_real)
    assert d_real.shape == x_real.shape


def test_opcheck():
    x_real = torch.randn(6, 3, 4, requires_grad=True)
    x_fake = torch.randn(6, 3, 4, requires_grad=True)
    torch.library.opcheck(torch.ops.fastreg.random_interpolate.default, (x_real, x_fake))
    torch.library.opcheck(torch.ops.fastreg.random_interpolate.default, (x_real.detach().double(),
                                                                          x_fake.detach().double(), None))
    assert torch.Tag.nondeterministic_seeded in torch.ops.fastreg.random_interpolate.default.tags


def test_reference_backend_uses_one_torch_rand_eps_per_row():
    fastreg.set_backend("reference")
    x_real, x_fake = torch.randn(4, 5), torch.randn(4, 5)
    torch.manual_seed(2)
    out = fastreg.random_interpolate(x_real, x_fake)
    torch.manual_seed(2)
    eps = torch.rand(4)[:, None]
    assert torch.equal(out, eps * x_real + (1 - eps) * x_fake)
    torch.manual_seed(2)
    assert torch.equal(out, reference.random_interpolate(x_real, x_fake))


# --- bad input ---------------------------------------------------------------------------------

BAD_INPUTS = [
    (torch.randn(4, 3), torch.randn(4, 2), r"x_fake has shape \(4, 2\) but x_real has shape \(4, 3\)"),
    (torch.randn(4, 3), torch.randn(5, 3), "x_fake has shape"),
    (torch.randn(4, 3), torch.randn(4, 3, dtype=torch.float64), "x_fake has dtype torch.float64 but x_real"),
    (torch.randn(0, 3), torch.randn(0, 3), "x_real has an empty batch"),
    (torch.tensor(1.0), torch.tensor(2.0), "x_real must have a batch dimension"),
    (torch.ones(4, 3, dtype=torch.int32), torch.ones(4, 3, dtype=torch.int32), "x_real must be float64"),
    (torch.randn(4, 3), "fake", "x_fake must be a tensor"),
]


@pytest.mark.parametrize("x_real,x_fake,message", BAD_INPUTS, ids=[m[:30] for _, _, m in BAD_INPUTS])
@pytest.mark.parametrize("backend", ["native", "reference"])
def test_bad_input_names_the_argument(backend, x_real, x_fake, message):
    fastreg.set_backend(backend)
    with pytest.raises(ValueError, match=message):
        fastreg.random_interpolate(x_real, x_fake)


@pytest.mark.parametrize("x_real,x_fake,message", BAD_INPUTS[:6], ids=[m[:30] for _, _, m in BAD_INPUTS[:6]])
def test_raw_op_rejects_bad_input(x_real, x_fake, message):
    message = message.replace(r"\(4, 2\)", r"\[4, 2\]").replace(r"\(4, 3\)", r"\[4, 3\]")
    with pytest.raises(ValueError, match=message.replace("torch.float64", "Double")):
        torch.ops.fastreg.random_interpolate(x_real, x_fake)


def test_generator_must_be_a_generator():
    with pytest.raises(ValueError, match="generator must be a torch.Generator"):
        fastreg.random_interpolate(torch.randn(2, 3), torch.randn(2, 3), generator=0)


@pytest.mark.cuda
def test_device_mismatch_names_x_fake():
    with pytest.raises(ValueError, match="x_fake is on cpu but x_real is on cuda"):
        fastreg.random_interpolate(torch.randn(4, 3, device="cuda"), torch.randn(4, 3))


# --- CUDA ----------------------------------------------------------------------------------------

@pytest.mark.cuda
@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
def test_cuda_formula_and_no_sync(dtype):
    x_real = torch.randn(64, 3, 32, 32, device="cuda").to(dtype)
    x_fake = torch.randn(64, 3, 32, 32, device="cuda").to(dtype)
    torch.cuda.set_sync_debug_mode("error")
    try:
        torch.manual_seed(5)
        out, eps = torch.ops.fastreg.random_interpolate(x_real, x_fake)
        torch.manual_seed(5)
        eps_again = eps_of_next_call(64, "cuda", dtype)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.equal(eps.to(eps_again.dtype), eps_again) or dtype in (torch.float16, torch.bfloat16)
    e = eps.double()[:, None, None, None]
    expected = e * x_real.double() + (1 - e) * x_fake.double()
    tol = 1e-6 if dtype in (torch.float32, torch.float64) else 2e-2
    torch.testing.assert_close(out.double(), expected, rtol=tol, atol=tol)


@pytest.mark.cuda
def test_cuda_rows_shorter_than_a_vector_and_misaligned_views():
    x_real = torch.randn(1001, 3, device="cuda")
    x_fake = torch.randn(1002, 3, device="cuda")[1:]  # starts 12 bytes in
    torch.manual_seed(2)
    out, eps = torch.ops.fastreg.random_interpolate(x_real, x_fake)
    expected = eps[:, None] * x_real + (1 - eps[:, None]) * x_fake
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
