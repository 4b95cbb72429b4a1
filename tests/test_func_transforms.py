"""torch.func (grad, vmap, jvp, jacrev, jacfwd, hessian) on the native ops, against the reference."""

import pytest
import torch
from torch.func import grad, hessian, jacfwd, jacrev, jvp, vmap

import fastreg

PENALTIES = [("one", "sq"), ("roth_js", "gp"), ("f:kl", "gp_one_sided")]


def penalty(weight, norm):
    def fn(g, v):
        return fastreg.grad_penalty(g, v, weight=weight, num_real=2, norm=norm, target=0.5)
    return fn


def inputs(seed=0, rows=4):
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(rows, 3, 5, dtype=torch.float64, generator=gen)
    v = torch.randn(rows, dtype=torch.float64, generator=gen)
    return g, v


def on_both_backends(fn):
    """fn() on the native backend and on the reference."""
    native = fn()
    fastreg.set_backend("reference")
    try:
        return native, fn()
    finally:
        fastreg.set_backend("native")


def assert_all_close(a, b):
    for x, y in zip(torch.utils._pytree.tree_leaves(a), torch.utils._pytree.tree_leaves(b), strict=True):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("weight,norm", PENALTIES)
def test_grad_penalty_transforms_match_reference(weight, norm):
    g, v = inputs()
    fn = penalty(weight, norm)
    tangents = (torch.randn_like(g), torch.randn_like(v))
    stacked = (torch.stack([g, 2 * g, -g]), torch.stack([v, v + 1, -v]))
    cases = {
        "grad": lambda: grad(fn, argnums=(0, 1))(g, v),
        "grad of grad": lambda: grad(lambda g_: (grad(fn)(g_, v) ** 2).sum())(g),
        "vmap": lambda: vmap(fn)(*stacked),
        "vmap of grad": lambda: vmap(grad(fn, argnums=(0, 1)))(*stacked),
        "jvp": lambda: jvp(fn, (g, v), tangents),
        "jacrev": lambda: jacrev(fn, argnums=(0, 1))(g, v),
        "jacfwd": lambda: jacfwd(fn, argnums=(0, 1))(g, v),
        "hessian in v": lambda: hessian(fn, argnums=1)(g, v),
        "jvp of grad": lambda: jvp(lambda g_: grad(fn)(g_, v), (g,), (tangents[0],)),
    }
    for name, case in cases.items():
        native, ref = on_both_backends(case)
        try:
            assert_all_close(native, ref)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None


def test_vmap_of_grad_penalty_equals_slice_by_slice_calls():
    """Each vmapped slice gets exactly what an unbatched call on it returns (its own mean and num_real)."""
    g, v = inputs(rows=6)
    gs, vs = torch.stack([g, g[[5, 4, 3, 2, 1, 0]]]), torch.stack([v, -v])
    fn = penalty("roth_js", "gp")
    batched = vmap(fn)(gs, vs)
    assert torch.equal(batched, torch.stack([fn(gs[0], vs[0]), fn(gs[1], vs[1])]))
    assert batched[0] != batched[1]  # the rows are real/fake differently in the two slices


def test_grad_of_grad_penalty_float32():
    g, v = inputs()
    g, v = g.float(), v.float()
    fn = penalty("roth_js", "gp")
    native, ref = on_both_backends(lambda: grad(fn, argnums=(0, 1))(g, v))
    for a, b in zip(native, ref):
        torch.testing.assert_close(a, b)


# --- random ops ------------------------------------------------------------------------------------

def test_gaussian_noise_grad_and_jvp_are_the_identity():
    x = torch.randn(4, 3, dtype=torch.float64)
    t = torch.randn_like(x)
    assert torch.equal(grad(lambda x_: (fastreg.gaussian_noise(x_, 0.3) * t).sum())(x), t)
    out, out_dot = jvp(lambda x_: fastreg.gaussian_noise(x_, 0.3), (x,), (t,))
    assert torch.equal(out_dot, t)  # the raw op used to drop the tangent (zeros)
    assert not torch.equal(out, x)


def test_random_interpolate_grad_and_jvp():
    real, fake = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    t_real, t_fake = torch.randn_like(real), torch.randn_like(fake)
    torch.manual_seed(4)
    out, out_dot = jvp(fastreg.random_interpolate, (real, fake), (t_real, t_fake))
    eps = ((out - fake) / (real - fake))[:, :1]  # the per-sample eps the call drew
    torch.testing.assert_close(out_dot, eps * t_real + (1 - eps) * t_fake)
    torch.manual_seed(4)
    d_real, d_fake = grad(lambda r, f: (fastreg.random_interpolate(r, f) * t_real).sum(), argnums=(0, 1))(real, fake)
    torch.testing.assert_close(d_real, eps * t_real)
    torch.testing.assert_close(d_fake, (1 - eps) * t_real)


def test_vmap_random_ops_draw_per_slice_with_randomness_different():
    x = torch.zeros(3, 4, 1000)
    sigma_rows = torch.tensor([1.0, 2.0, 0.5, 0.0])
    torch.manual_seed(0)
    out = vmap(lambda x_: fastreg.gaussian_noise(x_, sigma_rows), randomness="different")(x)
    assert out.shape == x.shape
    assert not torch.equal(out[0], out[1]) and not torch.equal(out[1], out[2])
    for k in range(3):  # each slice: per-row scales sigma_rows, unit normal noise
        torch.testing.assert_close(out[k].std(dim=1), sigma_rows, atol=0.1, rtol=0.1)
    real, fake = torch.zeros(3, 4, 2), torch.ones(3, 4, 2)
    mixed = vmap(fastreg.random_interpolate, randomness="different")(real, fake)
    eps = 1 - mixed[..., 0]  # eps * 0 + (1 - eps) * 1
    assert torch.equal(mixed[..., 0], mixed[..., 1])  # one eps per sample
    assert len(torch.unique(eps)) == 12  # and a different one per (slice, sample)


@pytest.mark.parametrize("randomness", ["error", "same"])
def test_vmap_random_ops_name_the_unsupported_randomness(randomness):
    x = torch.zeros(3, 4, 2)
    with pytest.raises(RuntimeError, match=f"gaussian_noise under torch.func.vmap needs randomness='different'.*"
                                           f"randomness='{randomness}'"):
        vmap(lambda x_: fastreg.gaussian_noise(x_, 1.0), randomness=randomness)(x)
    with pytest.raises(RuntimeError, match="random_interpolate under torch.func.vmap needs randomness='different'"):
        vmap(fastreg.random_interpolate, randomness=randomness)(x, x + 1)


def test_every_eager_function_of_the_ops_binds_its_signature_once():
    """Each ``apply`` of a Function with ``setup_context`` binds its arguments to ``forward``'s signature;
    fastreg.ops.eager_function stores that signature once (benchmarks: about 13 us per call)."""
    import importlib
    import inspect

    modules = [importlib.import_module(f"fastreg.ops.{name}") for name in ("grad_penalty", "random_ops")]
    functions = [obj for module in modules for obj in vars(module).values()
                 if isinstance(obj, type) and issubclass(obj, torch.autograd.Function)
                 and obj is not torch.autograd.Function and "setup_context" in vars(obj)]
    assert len(functions) == 4
    for fn in functions:
        forward = vars(fn)["forward"].__func__
        assert "__signature__" in vars(forward), fn.__name__
        assert forward.__signature__ == inspect.Signature.from_callable(forward, follow_wrapped=False)
