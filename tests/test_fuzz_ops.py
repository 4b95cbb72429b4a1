"""Property-based fuzzing of the fused ops against the reference (hypothesis).

Random shapes, memory layouts (strided, transposed, expanded, offset, channels-last), dtypes,
the devices at hand, every weight and norm, num_real in and out of range, and extreme values
(logits of +-1e4, +-inf and NaN; gradient entries of 0, +-1e4, +-inf, NaN). For every case the
native kernels and the reference either both raise the same error, or agree: the same entries are
NaN, the same are +inf and -inf, and the finite ones match to the dtype's tolerance, for the value
and the first derivatives; for the (float64) second derivatives the same entries are non-finite
and the finite ones match.

``FASTREG_FUZZ_EXAMPLES`` sets the number of cases per property (default 150; CI is deterministic,
``derandomize``; set ``FASTREG_FUZZ_RANDOM=1`` to explore new cases locally).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import fastreg
from fastreg.divergences import DIVERGENCES

EXAMPLES = int(os.environ.get("FASTREG_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("FASTREG_FUZZ_RANDOM"),
                database=None, suppress_health_check=[HealthCheck.too_slow])

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
WEIGHTS = ["one", "roth_js"] + [f"f:{d}" for d in DIVERGENCES]
NORMS = ["sq", "gp", "gp_one_sided"]
LAYOUTS = ["contiguous", "strided", "transposed", "expanded", "batch_strided", "offset", "channels_last"]
GRAD_SPECIALS = [0.0, 1e4, -1e4, math.inf, -math.inf, math.nan]
LOGIT_SPECIALS = [1e4, -1e4, math.inf, -math.inf, math.nan, 0.0, 40.0, -40.0, 90.0, -90.0]
# (rtol, atol) per dtype, as in tests/test_grad_penalty.py; half types round inputs and outputs.
TOLERANCES = {torch.float64: (1e-9, 1e-12), torch.float32: (1e-4, 1e-6), torch.float16: (2e-2, 1e-3),
              torch.bfloat16: (5e-2, 1e-2)}


@dataclass
class Case:
    """One fuzzed call; ``make()`` builds fresh leaf tensors in the drawn layout."""

    rows: int
    trailing: tuple
    layout: str
    dtype: torch.dtype
    device: str
    grad_values: torch.Tensor     # float64 [rows, *trailing], specials included
    logit_values: torch.Tensor | None
    logits_strided: bool
    weight: str
    norm: str
    num_real: int
    target: float

    def make(self):
        grad = in_layout(self.grad_values, self.layout, self.dtype, self.device).requires_grad_()
        if self.logit_values is None:
            return grad, None
        v = self.logit_values.to(device=self.device, dtype=self.dtype, copy=True)
        if self.logits_strided:
            v = torch.zeros(2 * self.rows, dtype=self.dtype, device=self.device).index_copy(
                0, torch.arange(0, 2 * self.rows, 2, device=self.device), v)[::2]
        return grad, v.requires_grad_()

    def kwargs(self):
        return dict(weight=self.weight, num_real=self.num_real, norm=self.norm, target=self.target)


def in_layout(values: torch.Tensor, layout: str, dtype, device) -> torch.Tensor:
    """``values`` (contiguous float64) as a ``dtype`` tensor on ``device`` with the given memory layout."""
    x = values.to(device=device, dtype=dtype, copy=True)  # a fresh leaf, never the case's own tensor
    if layout == "strided":
        big = torch.zeros(*x.shape[:-1], 2 * x.shape[-1], dtype=dtype, device=device) if x.dim() > 1 else \
            torch.zeros(2 * x.shape[0], dtype=dtype, device=device)
        view = big[..., ::2]
        view.copy_(x)
        return view
    if layout == "transposed" and x.dim() >= 3:
        return x.transpose(-1, -2).contiguous().transpose(-1, -2)
    if layout == "expanded" and x.dim() >= 2:
        return x[:, :1].expand(x.shape)  # stride 0 along dim 1 (values made constant along it)
    if layout == "batch_strided":
        big = torch.zeros(2 * x.shape[0], *x.shape[1:], dtype=dtype, device=device)
        big[::2] = x
        return big[::2]
    if layout == "offset":
        storage = torch.zeros(x.numel() + 3, dtype=dtype, device=device)
        view = storage[3:].view(x.shape)
        view.copy_(x)
        return view
    if layout == "channels_last" and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


@st.composite
def with_specials(draw, values: torch.Tensor, specials: list) -> torch.Tensor:
    flat = values.reshape(-1).clone()
    for _ in range(draw(st.integers(0, 3))):
        flat[draw(st.integers(0, flat.numel() - 1))] = draw(st.sampled_from(specials))
    return flat.reshape(values.shape)


@st.composite
def grad_penalty_cases(draw, dtypes=DTYPES, valid_only=False) -> Case:
    rows = draw(st.integers(1, 6))
    trailing = tuple(draw(st.lists(st.integers(1, 5), max_size=3)))
    layout = draw(st.sampled_from(LAYOUTS))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    scale = draw(st.sampled_from([1e-3, 0.3, 1.0, 4.0]))
    grad = torch.randn((rows, *trailing), generator=generator, dtype=torch.float64) * scale
    if layout == "expanded" and grad.dim() >= 2:
        grad = grad[:, :1].expand(grad.shape).contiguous()
    grad = draw(with_specials(grad, GRAD_SPECIALS))
    if layout == "expanded" and grad.dim() >= 2:
        grad = grad[:, :1].expand(grad.shape).contiguous()
    weight = draw(st.sampled_from(WEIGHTS))
    needs_logits = weight != "one"
    logits = None
    if needs_logits or draw(st.booleans()):
        logits = draw(with_specials(torch.randn(rows, generator=generator, dtype=torch.float64) * 3,
                                    LOGIT_SPECIALS))
    if valid_only:
        num_real = draw(st.integers(0, rows))
    else:
        num_real = draw(st.integers(-1, rows + 1))
        if needs_logits and draw(st.integers(0, 9)) == 0:
            logits = None  # weight needs logits: both must raise
    return Case(rows, trailing, layout, draw(st.sampled_from(dtypes)), draw(st.sampled_from(DEVICES)), grad,
                logits, draw(st.booleans()), weight, draw(st.sampled_from(NORMS)), num_real,
                draw(st.sampled_from([0.0, 0.5, 1.0, 2.5])))


def first_order(backend: str, case: Case):
    """("ok", value, d/dgrad, d/dlogits) or ("raise", exception type, message)."""
    fastreg.set_backend(backend)
    grad, logits = case.make()
    try:
        value = fastreg.grad_penalty(grad, logits, **case.kwargs())
    except (ValueError, RuntimeError) as exc:
        return ("raise", type(exc), str(exc))
    inputs = [grad] + ([logits] if logits is not None else [])
    grads = torch.autograd.grad(value, inputs, materialize_grads=True)
    return ("ok", value.detach(), *grads)


def assert_agree(native: torch.Tensor, reference: torch.Tensor, dtype, what: str, exact_kinds: bool = True,
                 scale: float = 1.0) -> None:
    """Same shape and dtype, the same non-finite entries (the same NaN, +inf and -inf ones when
    ``exact_kinds``), finite entries within tolerance (the absolute one times ``scale``)."""
    assert native.shape == reference.shape and native.dtype == reference.dtype, what
    a, b = native.detach().double().cpu(), reference.detach().double().cpu()
    kinds = (("NaN", torch.isnan), ("+inf", torch.isposinf), ("-inf", torch.isneginf)) if exact_kinds else \
        (("non-finite", lambda t: ~torch.isfinite(t)),)
    for name, test in kinds:
        assert torch.equal(test(a), test(b)), f"{what}: {name} entries differ:\nnative {a}\nreference {b}"
    finite = torch.isfinite(a)
    rtol, atol = TOLERANCES[dtype]
    torch.testing.assert_close(a[finite], b[finite], rtol=rtol, atol=atol * scale, msg=lambda m: f"{what}: {m}")


def found(grad, logits, weight, norm, target=0.0, num_real=0) -> Case:
    """A case the fuzzing found (each was a real disagreement, fixed in the kernels or the reference)."""
    grad = torch.tensor(grad, dtype=torch.float64)
    logits = None if logits is None else torch.tensor(logits, dtype=torch.float64)
    return Case(len(grad), (), "contiguous", torch.float64, "cpu", grad, logits, False, weight, norm, num_real,
                target)


# d/dv of a constant weight is 0 even where h = inf (the kernel gave 0 * inf = NaN).
FOUND_CONSTANT_WEIGHT = found([math.inf], [-0.88], "f:reverse_kl", "sq")
# d/dg is 0 where the one-sided penalty is flat, even with a NaN weight (the kernel gave NaN * 0).
FOUND_FLAT_ONE_SIDED = found([0.0015], [math.nan], "roth_js", "gp_one_sided")
# A saturated sigmoid weight keeps its tail: sigma(40)^2 sigma(-40) * inf = inf (the reference's
# autograd of torch.sigmoid gave (1 - sigma) = 0, so NaN, and 0 instead of 4e-10 for a finite row).
FOUND_SATURATED_TAIL = found([math.inf, 0.0], [40.0, 1.7], "roth_js", "sq")
FOUND_SATURATED_FINITE = found([1e4, 0.0], [40.0, 1.7], "roth_js", "sq")
# Second order: d2/dg = 2 R / B for an infinite row of the plain square (the kernel gave 0 * inf).
FOUND_SECOND_ORDER_INF_ROW = found([math.inf], None, "one", "sq")
# Second order at n = 0 of the gp form: 0 by the subgradient convention (the reference gave NaN).
FOUND_SECOND_ORDER_ZERO_ROW = found([0.0], None, "one", "gp")
FOUND_SECOND_ORDER_NAN_ROW = found([math.nan], None, "one", "gp")


@FUZZ
@example(case=FOUND_CONSTANT_WEIGHT)
@example(case=FOUND_FLAT_ONE_SIDED)
@example(case=FOUND_SATURATED_TAIL)
@example(case=FOUND_SATURATED_FINITE)
@given(grad_penalty_cases())
def test_grad_penalty_native_agrees_with_reference_or_both_raise(case):
    native, reference = first_order("native", case), first_order("reference", case)
    assert native[0] == reference[0], f"native {native[:2]} vs reference {reference[:2]}"
    if native[0] == "raise":
        assert native[1:] == reference[1:]
        return
    for what, a, b in zip(("value", "d/dgrad", "d/dlogits"), native[1:], reference[1:]):
        assert_agree(a, b, case.dtype, what)


def second_order(backend: str, case: Case, seed: int):
    """d/d(grad, logits) of <d value/d grad, R> + <d value/d logits, S> for fixed random R, S."""
    fastreg.set_backend(backend)
    grad, logits = case.make()
    value = fastreg.grad_penalty(grad, logits, **case.kwargs())
    inputs = [grad] + ([logits] if logits is not None else [])
    first = torch.autograd.grad(value, inputs, create_graph=True, materialize_grads=True)
    generator = torch.Generator().manual_seed(seed)
    probe = sum((f * torch.randn(f.shape, generator=generator, dtype=f.dtype).to(f.device)).sum() for f in first)
    return torch.autograd.grad(probe, inputs, materialize_grads=True, allow_unused=True)


@FUZZ
@example(case=FOUND_SECOND_ORDER_INF_ROW, seed=0)
@example(case=FOUND_SECOND_ORDER_ZERO_ROW, seed=0)
@example(case=FOUND_SECOND_ORDER_NAN_ROW, seed=0)
@example(case=FOUND_SATURATED_FINITE, seed=0)
@given(grad_penalty_cases(dtypes=[torch.float64], valid_only=True), st.integers(0, 2**31 - 1))
def test_grad_penalty_second_derivatives_agree(case, seed):
    """Float64. Where terms overflow, the native double backward adds them (inf - inf = NaN) where the
    reference's autograd may factor them (inf * finite = -inf): both non-finite, kinds may differ.
    Finite entries agree to 1e-12 relative to the penalty's scale 1 + max_i ||g_i||^2 (autograd's
    second derivative of a saturated weight cancels at that level)."""
    native, reference = second_order("native", case, seed), second_order("reference", case, seed)
    sum_sq = case.grad_values.reshape(case.rows, -1).pow(2).sum(1)
    scale = 1 + float(sum_sq[torch.isfinite(sum_sq)].max()) if bool(torch.isfinite(sum_sq).any()) else 1.0
    for what, a, b in zip(("d2/dgrad", "d2/dlogits"), native, reference):
        assert_agree(a, b, torch.float64, what, exact_kinds=False, scale=scale)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layouts_really_are_non_contiguous(layout):
    """The strategy's layouts are what they claim (so the fuzzing covers them)."""
    x = in_layout(torch.randn(3, 4, 5, 6, dtype=torch.float64), layout, torch.float32, "cpu")
    assert x.is_contiguous() == (layout in ("contiguous", "offset"))
    if layout == "offset":
        assert x.storage_offset() == 3
    if layout == "expanded":
        assert x.stride(1) == 0


# --- the random ops (issue 3): properties that hold for any random stream -----------------------
# Native (in-kernel Philox) and reference (torch.randn/rand) draw different numbers by design, so
# they are compared on what must hold for both: shape, dtype and device; sigma = 0 (or a zero row)
# returns x exactly; the same seed gives the same result and the next call fresh numbers; NaN in
# the input stays NaN; the gradient w.r.t. x is the identity (noise) or eps_i, 1 - eps_i with the
# forward's eps (interpolation); and bad arguments raise the same error in both.

X_SPECIALS = [0.0, 1e4, -1e4, math.nan, math.inf]


@st.composite
def inputs(draw, min_rows=1):
    """(float64 values [B, ...] with specials, layout, dtype, device)."""
    rows = draw(st.integers(min_rows, 6))
    trailing = tuple(draw(st.lists(st.integers(1, 5), max_size=3)))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    values = torch.randn((rows, *trailing), generator=generator, dtype=torch.float64)
    layout = draw(st.sampled_from(LAYOUTS))
    if layout == "expanded" and values.dim() >= 2:
        values = values[:, :1].expand(values.shape).contiguous()
    values = draw(with_specials(values, X_SPECIALS))
    if layout == "expanded" and values.dim() >= 2:
        values = values[:, :1].expand(values.shape).contiguous()
    return values, layout, draw(st.sampled_from(DTYPES)), draw(st.sampled_from(DEVICES))


@st.composite
def sigmas(draw, rows: int, device: str):
    """A float (0, small, large; sometimes negative, NaN or inf: invalid) or a [B] tensor (zero rows)."""
    kind = draw(st.sampled_from(["float", "zero", "rows", "bad_float", "bad_rows", "bad_shape"]))
    if kind == "float":
        return draw(st.sampled_from([1e-3, 0.1, 1.0, 30.0]))
    if kind == "zero":
        return 0.0
    if kind == "bad_float":
        return draw(st.sampled_from([-0.1, math.nan, math.inf]))
    values = [draw(st.sampled_from([0.0, 0.05, 1.0, 7.0])) for _ in range(rows)]
    if kind == "bad_rows":
        values[draw(st.integers(0, rows - 1))] = draw(st.sampled_from([-1.0, math.nan]))
    if kind == "bad_shape":
        values.append(1.0)
    return torch.tensor(values, dtype=torch.float32, device=device)


def call(op, *args, seed: int):
    """(out, None) or (None, exception type), with the default generator seeded first."""
    torch.manual_seed(seed)
    try:
        return op(*args), None
    except (ValueError, RuntimeError) as exc:
        return None, type(exc)


def assert_same_nan(out: torch.Tensor, nan_inputs: torch.Tensor) -> None:
    assert torch.equal(torch.isnan(out.detach()).cpu(), nan_inputs.cpu())


@FUZZ
@given(inputs(), st.data(), st.integers(0, 2**31 - 1))
def test_gaussian_noise_properties_hold_for_native_and_reference(x_case, data, seed):
    values, layout, dtype, device = x_case
    sigma = data.draw(sigmas(values.shape[0], device))
    outcomes = {}
    for backend in ("native", "reference"):
        fastreg.set_backend(backend)
        x = in_layout(values, layout, dtype, device).requires_grad_()
        out, error = call(fastreg.ops.gaussian_noise, x, sigma, seed=seed)
        outcomes[backend] = error
        if error is not None:
            continue
        assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
        assert out.is_contiguous() or backend == "reference"  # documented for the native op only
        again, _ = call(fastreg.ops.gaussian_noise, x, sigma, seed=seed)
        assert torch.equal(torch.nan_to_num(out), torch.nan_to_num(again)), f"{backend}: same seed, other noise"
        x_exact = in_layout(values, layout, dtype, device)
        zero_rows = _zero_sigma_rows(sigma, x.shape[0], device)
        assert torch.equal(torch.nan_to_num(out.detach()[zero_rows]), torch.nan_to_num(x_exact[zero_rows]))
        assert_same_nan(out, torch.isnan(x_exact))  # x + sigma xi: NaN exactly where x is
        fresh, _ = call(fastreg.ops.gaussian_noise, x, sigma, seed=seed + 1)
        # Entries whose noise outweighs their rounding (|x| <= 10, sigma >= 1e-3, 32 or 64 bits) change.
        moved = ~zero_rows.reshape((-1,) + (1,) * (x.dim() - 1)).expand(x.shape) & (x_exact.abs() <= 10)
        if bool(moved.any()) and torch.finfo(dtype).bits > 16:
            assert not torch.equal(out.detach()[moved], fresh.detach()[moved]), f"{backend}: no fresh noise"
        cotangent = torch.randn(x.shape, dtype=torch.float64).to(device, dtype)
        (d_x,) = torch.autograd.grad(out, x, cotangent)
        assert torch.equal(d_x, cotangent), f"{backend}: gradient w.r.t. x is not the identity"
    assert outcomes["native"] == outcomes["reference"], outcomes


def _zero_sigma_rows(sigma, rows: int, device) -> torch.Tensor:
    if isinstance(sigma, torch.Tensor):
        return (sigma == 0).to(device)
    return torch.full((rows,), sigma == 0, device=device)


@st.composite
def interpolate_pairs(draw):
    values, layout, dtype, device = draw(inputs())
    other = draw(with_specials(torch.randn(values.shape, dtype=torch.float64,
                                           generator=torch.Generator().manual_seed(draw(st.integers(0, 999)))),
                               X_SPECIALS))
    mismatch = draw(st.sampled_from([None, None, None, "shape", "dtype"]))
    return values, other, layout, dtype, device, mismatch


@FUZZ
@given(interpolate_pairs(), st.integers(0, 2**31 - 1))
def test_random_interpolate_properties_hold_for_native_and_reference(case, seed):
    real_values, fake_values, layout, dtype, device, mismatch = case
    outcomes = {}
    for backend in ("native", "reference"):
        fastreg.set_backend(backend)
        x_real = in_layout(real_values, layout, dtype, device).requires_grad_()
        x_fake = in_layout(fake_values, "contiguous", dtype, device)
        if mismatch == "shape":
            x_fake = torch.cat([x_fake, x_fake[:1]])
        elif mismatch == "dtype":
            x_fake = x_fake.to(torch.float64 if dtype != torch.float64 else torch.float32)
        x_fake = x_fake.requires_grad_()
        out, error = call(fastreg.ops.random_interpolate, x_real, x_fake, seed=seed)
        outcomes[backend] = error
        if error is not None:
            continue
        assert out.shape == x_real.shape and out.dtype == dtype and out.device == x_real.device
        again, _ = call(fastreg.ops.random_interpolate, x_real, x_fake, seed=seed)
        assert torch.equal(torch.nan_to_num(out), torch.nan_to_num(again)), f"{backend}: same seed, other eps"
        nan_in = torch.isnan(real_values) | torch.isnan(fake_values)
        assert bool(torch.isnan(out.detach()).cpu()[nan_in].all()), f"{backend}: a NaN input was dropped"
        cotangent = torch.randn(out.shape, dtype=torch.float64).to(device, dtype)
        d_real, d_fake = torch.autograd.grad(out, (x_real, x_fake), cotangent)
        eps = _row_factor(d_real, cotangent)
        assert bool(((eps >= 0) & (eps <= 1)).all()), f"{backend}: eps outside [0, 1]: {eps}"
        rtol = TOLERANCES[dtype][0] * 4
        torch.testing.assert_close(_row_factor(d_fake, cotangent), 1 - eps, rtol=rtol, atol=rtol)
        _assert_on_the_segments(out, real_values, fake_values, eps, dtype)
    assert outcomes["native"] == outcomes["reference"], outcomes


def _row_factor(d: torch.Tensor, cotangent: torch.Tensor) -> torch.Tensor:
    """The per-row factor f_i in d = f_i * cotangent (least squares over the row), float64 on the CPU."""
    d, c = d.double().cpu().reshape(d.shape[0], -1), cotangent.double().cpu().reshape(d.shape[0], -1)
    return (d * c).sum(1) / (c * c).sum(1)


def _assert_on_the_segments(out, real_values, fake_values, eps, dtype) -> None:
    """Where both inputs are finite, out_i = eps_i x_r + (1 - eps_i) x_f, with the backward's eps."""
    rows = out.shape[0]
    eps_rows = eps.reshape((rows,) + (1,) * (out.dim() - 1))
    want = eps_rows * real_values + (1 - eps_rows) * fake_values
    finite = torch.isfinite(real_values) & torch.isfinite(fake_values)
    rtol, atol = TOLERANCES[dtype]
    scale = 1 + torch.maximum(real_values.abs(), fake_values.abs())[finite]
    got = out.detach().double().cpu()[finite]
    assert bool(((got - want[finite]).abs() <= 4 * (rtol + atol) * scale).all()), \
        f"not on the segments: {got} vs {want[finite]}"
