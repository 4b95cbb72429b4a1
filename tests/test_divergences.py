"""The section-4 table against its definitions, by automatic differentiation."""

import pytest
import torch

from fastreg.divergences import DIVERGENCES, get_divergence


def derivative(fn, v):
    """dfn/dv elementwise, itself differentiable (zero where fn does not depend on v)."""
    u = v if v.requires_grad else v.detach().requires_grad_()
    out = fn(u)
    if not out.requires_grad:  # a constant, e.g. the derivative of a linear activation
        return torch.zeros_like(u)
    (d,) = torch.autograd.grad(out.sum(), u, create_graph=True, allow_unused=True, materialize_grads=True)
    return d


@pytest.mark.parametrize("name", list(DIVERGENCES))
def test_weight_is_conjugate_curvature_times_slope_squared(name):
    """w_f(v) = f*''(g(v)) g'(v)^2 = F''(v) - F'(v) g''(v)/g'(v) with F = f* o g."""
    d = DIVERGENCES[name]
    v = torch.linspace(-3, 3, 41, dtype=torch.float64)
    F1 = derivative(d.conjugate, v)
    F2 = derivative(lambda u: derivative(d.conjugate, u), v)
    g1 = derivative(d.activation, v)
    g2 = derivative(lambda u: derivative(d.activation, u), v)
    torch.testing.assert_close(d.weight(v), F2 - F1 * g2 / g1, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", list(DIVERGENCES))
def test_weight_slope_and_curvature(name):
    d = DIVERGENCES[name]
    v = torch.linspace(-4, 4, 33, dtype=torch.float64)
    torch.testing.assert_close(d.weight_slope(v), derivative(d.weight, v), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(d.weight_curvature(v), derivative(d.weight_slope, v), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", list(DIVERGENCES))
def test_activation_increases_with_logit(name):
    v = torch.linspace(-5, 5, 101, dtype=torch.float64)
    assert (derivative(DIVERGENCES[name].activation, v) > 0).all()


def test_stable_at_extreme_logits():
    v = torch.tensor([-100.0, 100.0], dtype=torch.float64)
    for name in ("js", "gan"):
        d = DIVERGENCES[name]
        assert torch.isfinite(d.activation(v)).all() and torch.isfinite(d.conjugate(v)).all()
    assert torch.allclose(DIVERGENCES["gan"].conjugate(v), torch.tensor([0.0, 100.0], dtype=torch.float64))


def test_unknown_divergence_named():
    with pytest.raises(ValueError, match="'tv'"):
        get_divergence("tv")
