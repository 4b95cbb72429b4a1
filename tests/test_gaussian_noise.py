"""fastreg.ops.gaussian_noise: distribution, reproducibility, per-sample sigma, gradients, compile, errors."""

import pytest
import torch

import fastreg

from random_checks import as_numpy, assert_no_serial_dependence, assert_standard_normal, assert_uncorrelated

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
HALF_TYPES = [torch.float16, torch.bfloat16]
ALL_DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]


def noise_with_seed(x, sigma, seed):
    torch.manual_seed(seed)
    return fastreg.gaussian_noise(x, sigma)


# --- distribution --------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_noise_is_standard_normal_without_serial_dependence(dtype, device):
    x = torch.zeros(1000, 1000, dtype=dtype, device=device)  # 10^6 draws
    z = as_numpy(fastreg.gaussian_noise(x, 1.0))
    assert_standard_normal(z)
    assert_no_serial_dependence(z, rows=1000)


@pytest.mark.parametrize("device", DEVICES)
def test_consecutive_calls_are_uncorrelated(device):
    x = torch.zeros(1000, 1000, device=device)
    first, second = as_numpy(fastreg.gaussian_noise(x, 1.0)), as_numpy(fastreg.gaussian_noise(x, 1.0))
    assert_uncorrelated("call 1, call 2", first, second)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", HALF_TYPES, ids=str)
def test_half_types_add_the_float32_noise_in_float32(dtype, device):
    x = torch.randn(64, 3, 7, 5, device=device).to(dtype)
    noisy = noise_with_seed(x, 0.3, seed=5)
    unit = noise_with_seed(torch.zeros(x.shape, device=device), 1.0, seed=5)  # the same normals, float32
    assert noisy.dtype == dtype
    assert torch.equal(noisy, (x.float() + 0.3 * unit).to(dtype))


def test_noise_is_x_plus_sigma_times_the_unit_noise():
    x = torch.randn(16, 3, 9, 9, dtype=torch.float64)
    noisy = noise_with_seed(x, 0.25, seed=11)
    unit = noise_with_seed(torch.zeros_like(x), 1.0, seed=11)
    torch.testing.assert_close(noisy - x, 0.25 * unit, rtol=0, atol=1e-15)


# --- reproducibility ----------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
def test_same_seed_same_noise_and_every_call_fresh(dtype, device):
    x = torch.randn(8, 3, 17, 13, device=device).to(dtype)
    a, b = noise_with_seed(x, 0.5, seed=1), noise_with_seed(x, 0.5, seed=1)
    assert torch.equal(a, b)
    c = fastreg.gaussian_noise(x, 0.5)  # the next call after seed 1's first
    assert (c != b).float().mean() > 0.99
    assert (noise_with_seed(x, 0.5, seed=2) != a).float().mean() > 0.99


@pytest.mark.parametrize("device", DEVICES)
def test_explicit_generator_is_used_and_default_one_untouched(device):
    x = torch.zeros(4, 100, device=device)
    first = fastreg.gaussian_noise(x, 1.0, generator=torch.Generator(device).manual_seed(7))
    again = fastreg.gaussian_noise(x, 1.0, generator=torch.Generator(device).manual_seed(7))
    other = fastreg.gaussian_noise(x, 1.0, generator=torch.Generator(device).manual_seed(8))
    assert torch.equal(first, again) and not torch.equal(first, other)
    torch.manual_seed(3)
    expected_next = torch.rand(3, device=device)
    torch.manual_seed(3)
    fastreg.gaussian_noise(x, 1.0, generator=torch.Generator(device).manual_seed(7))
    assert torch.equal(torch.rand(3, device=device), expected_next)


def test_noise_does_not_depend_on_thread_count():
    x = torch.zeros(64, 3, 65, 63)  # 786240 elements, many parallel tasks
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            results.append(noise_with_seed(x, 1.0, seed=4))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(results[0], results[1]) and torch.equal(results[0], results[2])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_each_value_depends_only_on_its_element_index(dtype, device):
    """A prefix of a bigger tensor gets the same noise: no dependence on size, tiling or launch shape."""
    big = noise_with_seed(torch.zeros(100003, dtype=dtype, device=device), 1.0, seed=9)
    for n in (1, 3, 4, 5, 129, 4097):
        small = noise_with_seed(torch.zeros(n, dtype=dtype, device=device), 1.0, seed=9)
        assert torch.equal(small, big[:n])


@pytest.mark.parametrize("device", DEVICES)
def test_strided_input_gets_the_noise_of_its_contiguous_copy(device):
    x = torch.randn(6, 4, 10, device=device)[:, :, ::2]  # non-contiguous view
    assert not x.is_contiguous()
    noisy = noise_with_seed(x, 0.7, seed=6)
    assert noisy.is_contiguous() and noisy.shape == x.shape
    assert torch.equal(noisy, noise_with_seed(x.contiguous(), 0.7, seed=6))


# --- sigma -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
def test_sigma_zero_returns_x_exactly(dtype, device):
    x = torch.randn(5, 3, 8, device=device).to(dtype)[:, :, 1::2]
    assert torch.equal(fastreg.gaussian_noise(x, 0.0), x)
    assert torch.equal(fastreg.gaussian_noise(x, torch.zeros(5, device=device)), x)


@pytest.mark.parametrize("device", DEVICES)
def test_per_sample_sigma_scales_its_own_row(device):
    # Rows of 15 elements: row boundaries fall inside Philox blocks of 4.
    sigma = torch.tensor([0.0, 1.0, 2.0, 0.5, 3.0, 0.25, 1.5], device=device)
    zeros = torch.zeros(7, 3, 5, device=device)
    per_row = noise_with_seed(zeros, sigma, seed=12)
    unit = noise_with_seed(zeros, 1.0, seed=12)
    assert torch.equal(per_row, sigma[:, None, None] * unit)
    assert torch.equal(per_row[0], torch.zeros_like(per_row[0]))
    # A 0-d tensor applies to every row.
    assert torch.equal(noise_with_seed(zeros, torch.tensor(2.0, device=device), seed=12), 2.0 * unit)


def test_per_sample_sigma_row_spread():
    sigma = torch.tensor([0.1, 1.0, 4.0], dtype=torch.float64)
    z = fastreg.gaussian_noise(torch.zeros(3, 200000, dtype=torch.float64), sigma)
    std = z.std(dim=1)
    # SE of a sample std ~ sigma / sqrt(2n).
    assert torch.all((std - sigma).abs() < 4 * sigma / (2 * 200000) ** 0.5)


@pytest.mark.cuda
def test_cuda_rows_with_invalid_sigma_become_nan():
    """On CUDA the values of a tensor sigma are not read on the host (no sync); bad rows are NaN."""
    sigma = torch.tensor([1.0, -1.0, float("nan"), float("inf"), 0.0], device="cuda")
    out = fastreg.gaussian_noise(torch.zeros(5, 6, device="cuda"), sigma)
    assert torch.isfinite(out[[0, 4]]).all() and torch.isnan(out[1:4]).all()


# --- gradients ---------------------------------------------------------------------------------

def seeded_noise(sigma):
    """gaussian_noise with a fresh generator seeded 0 per call, so that gradcheck sees a function."""
    def fn(x):
        return fastreg.gaussian_noise(x, sigma, generator=torch.Generator().manual_seed(0))
    return fn


@pytest.mark.parametrize("sigma", [0.3, "rows"])
def test_gradcheck_and_gradgradcheck(sigma):
    x = torch.randn(4, 3, 5, dtype=torch.float64, requires_grad=True)
    if sigma == "rows":
        sigma = torch.rand(4, dtype=torch.float64)
    assert torch.autograd.gradcheck(seeded_noise(sigma), (x,))
    assert torch.autograd.gradgradcheck(seeded_noise(sigma), (x,))


@pytest.mark.parametrize("path", ["wrapper", "registered_op"])
def test_gradient_is_the_identity(path):
    x = torch.randn(6, 7, requires_grad=True)
    w = torch.randn(6, 7)
    if path == "wrapper":
        out = fastreg.gaussian_noise(x, 0.5)
    else:
        out = torch.ops.fastreg.gaussian_noise(x, None, 0.5)
    (d_x,) = torch.autograd.grad((out * w).sum(), x)
    assert torch.equal(d_x, w)


def test_sigma_that_requires_grad_is_rejected():
    x = torch.randn(3, 4)
    sigma = torch.rand(3, requires_grad=True)
    with pytest.raises(ValueError, match="sigma requires grad"):
        fastreg.gaussian_noise(x, sigma)
    with torch.no_grad():
        fastreg.gaussian_noise(x, sigma)  # nothing to differentiate: accepted


# --- dispatcher, compile, backends -------------------------------------------------------------------

def test_opcheck():
    x = torch.randn(6, 3, 4, requires_grad=True)
    torch.library.opcheck(torch.ops.fastreg.gaussian_noise.default, (x, None, 0.5, None))
    torch.library.opcheck(torch.ops.fastreg.gaussian_noise.default, (x, torch.rand(6), 1.0, None))
    torch.library.opcheck(torch.ops.fastreg.gaussian_noise.default, (x.detach().half(), None, 0.5, None))
    assert torch.Tag.nondeterministic_seeded in torch.ops.fastreg.gaussian_noise.default.tags


def test_torch_compile_fullgraph_cpu_matches_eager():
    """Both random ops inside one compiled graph: same numbers and gradients as eager under the same seed."""
    torch._dynamo.reset()

    def d_inputs(x_real, x_fake, sigma_rows):
        noisy_real = fastreg.gaussian_noise(x_real, 0.1)
        noisy_fake = fastreg.gaussian_noise(x_fake, sigma_rows)
        return noisy_real, noisy_fake, fastreg.random_interpolate(noisy_real, noisy_fake)

    compiled = torch.compile(d_inputs, fullgraph=True)
    x_real = torch.randn(4, 3, 8, 8, requires_grad=True)
    x_fake = torch.randn(4, 3, 8, 8, requires_grad=True)
    sigma_rows = torch.rand(4)
    weights = [torch.randn(4, 3, 8, 8) for _ in range(3)]
    results = []
    for fn in (compiled, d_inputs):
        torch.manual_seed(21)
        outs = fn(x_real, x_fake, sigma_rows)
        loss = sum((o * w).sum() for o, w in zip(outs, weights))
        results.append((outs, torch.autograd.grad(loss, (x_real, x_fake))))
    (outs_c, grads_c), (outs_e, grads_e) = results
    for a, b in zip(outs_c, outs_e):
        assert torch.equal(a, b)
    for a, b in zip(grads_c, grads_e):
        torch.testing.assert_close(a, b)


@pytest.mark.slow  # two inductor compilations without the cache: about 15 s each on 2 cores
@pytest.mark.parametrize("requires_grad", [False, True], ids=["inference", "training"])
def test_torch_compile_keeps_program_order_of_independent_random_ops(requires_grad):
    """gaussian_noise(a), then random_interpolate(b, c), on unrelated inputs: inductor ran the interpolation
    first (nothing in the data orders them, and the noise is needed later), so the compiled function drew
    other numbers than eager under the same seed. The ops are ordered effectful now (fastreg/ops/order.py)."""
    torch._dynamo.reset()

    def draws(a, b, c):
        noisy = fastreg.gaussian_noise(a, 0.5)
        mixed = fastreg.random_interpolate(b, c)
        return (noisy * mixed.sum()).sum()

    a, b, c = (torch.randn(4, n, requires_grad=requires_grad) for n in (8, 3, 3))
    with torch._inductor.config.patch(force_disable_caches=True):  # a cached graph would skip the lowering
        compiled = torch.compile(draws, fullgraph=True)
        torch.manual_seed(5)
        loss_c = compiled(a, b, c)
    torch.manual_seed(5)
    loss_e = draws(a, b, c)
    torch.testing.assert_close(loss_c, loss_e)  # swapped draws give an unrelated number
    if requires_grad:
        for g_c, g_e in zip(torch.autograd.grad(loss_c, (a, b, c)), torch.autograd.grad(loss_e, (a, b, c))):
            torch.testing.assert_close(g_c, g_e)
    torch.manual_seed(5)  # and the draws themselves, in eager order
    noisy, mixed = fastreg.gaussian_noise(a, 0.5), fastreg.random_interpolate(b, c)
    torch.testing.assert_close(loss_c, (noisy * mixed.sum()).sum())


def test_reference_backend_applies_sigma_per_row():
    fastreg.set_backend("reference")
    sigma = torch.tensor([0.0, 2.0, 1.0])
    torch.manual_seed(2)
    out = fastreg.gaussian_noise(torch.ones(3, 1000), sigma)
    torch.manual_seed(2)
    expected = torch.ones(3, 1000) + sigma[:, None] * torch.randn(3, 1000)
    assert torch.equal(out, expected)


# --- bad input ---------------------------------------------------------------------------------

BAD_INPUTS = [
    (dict(sigma=-0.1), "sigma must be finite and non-negative"),
    (dict(sigma=float("nan")), "sigma must be finite and non-negative"),
    (dict(sigma=float("inf")), "sigma must be finite and non-negative"),
    (dict(sigma=torch.ones(3)), r"sigma must have shape \[B\] = \[4\]"),
    (dict(sigma=torch.ones(4, 1)), r"sigma must have shape \[B\] = \[4\]"),
    (dict(sigma=torch.tensor([1.0, -1.0, 1.0, 1.0])), r"sigma must be finite and non-negative, got sigma\[1\]"),
    (dict(sigma=torch.tensor([1.0, 1.0, float("nan"), 1.0])), r"sigma\[2\]"),
    (dict(sigma=torch.ones(4, dtype=torch.int64)), "sigma must be floating point"),
    (dict(sigma="0.1"), "sigma must be a float or a"),
    (dict(x=torch.ones(4, 3, dtype=torch.int64)), "x must be float64"),
    (dict(x=torch.tensor(1.0), sigma=torch.ones(1)), "batch dimension"),
    (dict(generator="seed"), "generator must be a torch.Generator"),
]


@pytest.mark.parametrize("kwargs,message", BAD_INPUTS, ids=[m for _, m in BAD_INPUTS])
@pytest.mark.parametrize("backend", ["native", "reference"])
def test_bad_input_names_the_argument(backend, kwargs, message):
    fastreg.set_backend(backend)
    kwargs = dict(kwargs)
    x = kwargs.pop("x", torch.randn(4, 3))
    sigma = kwargs.pop("sigma", 0.5)
    with pytest.raises(ValueError, match=message):
        fastreg.gaussian_noise(x, sigma, **kwargs)


@pytest.mark.parametrize("sigma_rows,sigma,message", [
    (None, -1.0, "sigma must be finite"),
    (torch.ones(5), 1.0, r"sigma must have shape \[B\] = \[4\]"),
    (torch.tensor([1.0, 1.0, -2.0, 1.0]), 1.0, r"sigma\[2\]"),
])
def test_raw_op_rejects_bad_sigma(sigma_rows, sigma, message):
    with pytest.raises(ValueError, match=message):
        torch.ops.fastreg.gaussian_noise(torch.randn(4, 3), sigma_rows, sigma)


@pytest.mark.cuda
def test_device_mismatches_name_the_argument():
    x = torch.randn(4, 3, device="cuda")
    with pytest.raises(ValueError, match="sigma is on cpu but x is on cuda"):
        fastreg.gaussian_noise(x, torch.ones(4))
    with pytest.raises(ValueError, match="generator is for cpu"):
        fastreg.gaussian_noise(x, 0.5, generator=torch.Generator())


# --- CUDA ----------------------------------------------------------------------------------------

@pytest.mark.cuda
@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
def test_cuda_matches_its_own_unit_noise_and_needs_no_sync(dtype):
    x = torch.randn(64, 3, 32, 32, device="cuda").to(dtype)
    sigma = torch.rand(64, device="cuda")
    torch.cuda.set_sync_debug_mode("error")
    try:
        noisy = noise_with_seed(x, sigma, seed=8)
        unit = noise_with_seed(torch.zeros(x.shape, device="cuda", dtype=torch.float64 if dtype == torch.float64
                                           else torch.float32), 1.0, seed=8)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    expected = (x.to(unit.dtype) + sigma.to(unit.dtype)[:, None, None, None] * unit).to(dtype)
    torch.testing.assert_close(noisy, expected, rtol=1e-6 if dtype in (torch.float32, torch.float64) else 1e-2,
                               atol=1e-6 if dtype in (torch.float32, torch.float64) else 1e-2)


@pytest.mark.cuda
def test_cuda_misaligned_input_gets_the_same_noise():
    """A view that starts one element in takes the unvectorized path: same values per element index."""
    base = torch.randn(4097, device="cuda")
    view = base[1:]
    assert view.data_ptr() % 16 != 0
    assert torch.equal(noise_with_seed(view, 0.5, seed=3), noise_with_seed(view.clone(), 0.5, seed=3))


@pytest.mark.cuda
def test_cuda_graph_replays_draw_fresh_noise_matching_eager_calls():
    x = torch.randn(8, 3, 16, 16, device="cuda")
    sigma = torch.rand(8, device="cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside the capture, as torch.cuda.graphs asks
        for _ in range(2):
            fastreg.gaussian_noise(x, sigma)
            fastreg.random_interpolate(x, x.flip(0))
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        noisy = fastreg.gaussian_noise(x, sigma)
        interpolated = fastreg.random_interpolate(x, x.flip(0))
    torch.manual_seed(123)
    replays = []
    for _ in range(3):
        graph.replay()
        replays.append((noisy.clone(), interpolated.clone()))
    torch.manual_seed(123)
    eager = [(fastreg.gaussian_noise(x, sigma), fastreg.random_interpolate(x, x.flip(0))) for _ in range(3)]
    for (graph_noise, graph_interp), (eager_noise, eager_interp) in zip(replays, eager):
        assert torch.equal(graph_noise, eager_noise)
        assert torch.equal(graph_interp, eager_interp)
    assert not torch.equal(replays[0][0], replays[1][0])
    assert not torch.equal(replays[1][1], replays[2][1])
