"""fastreg.regularizers against plain-autograd computations of each formula (float64, small D).

Each reference below is written from the formula of docs/design.md section 3 with plain tensor ops
(separate real and fake forwards, norms by hand, weights from the section 4 table), and the tests
compare the value *and* the gradient w.r.t. D's parameters (which flows through nabla_x v).
"""

import math

import pytest
import torch
import torch.nn as nn

import fastreg
from fastreg import regularizers
from fastreg.divergences import DIVERGENCES


def small_d(dtype=torch.float64, batch_norm=False):
    torch.manual_seed(1)
    layers = [nn.Conv2d(2, 4, 3, padding=1), nn.Tanh()]
    if batch_norm:
        layers.append(nn.BatchNorm2d(4))
    layers += [nn.Flatten(), nn.Linear(4 * 3 * 3, 6), nn.Tanh(), nn.Linear(6, 1)]
    with torch.no_grad():
        layers[-1].weight.mul_(13)  # input-gradient norms around 1 and logits of a few units
    return nn.Sequential(*layers).to(dtype)


def batches(n_real=5, n_fake=5, dtype=torch.float64):
    g = torch.Generator().manual_seed(2)
    return (torch.randn(n_real, 2, 3, 3, generator=g, dtype=dtype),
            torch.randn(n_fake, 2, 3, 3, generator=g, dtype=dtype) * 1.5)


def input_grads(D, x):
    """Logits and per-sample nabla_x v for a batch, by plain autograd."""
    x = x if x.requires_grad else x.detach().requires_grad_()
    v = D(x).flatten()
    (g,) = torch.autograd.grad(v.sum(), x, create_graph=True)
    return v, g.flatten(1)


def sq_norms(g):
    return (g * g).sum(dim=1)


def param_grads(D, scalar):
    return torch.autograd.grad(scalar, list(D.parameters()), retain_graph=True, allow_unused=True,
                               materialize_grads=True)


def assert_same(D, got, expected, rtol=1e-10):
    torch.testing.assert_close(got, expected, rtol=rtol, atol=1e-12)
    for a, b in zip(param_grads(D, got), param_grads(D, expected)):
        torch.testing.assert_close(a, b, rtol=rtol, atol=1e-12)


# --- Roth et al. 2017 -----------------------------------------------------------------------------

def roth_js_by_formula(D, x_real, x_fake, detach_weights=False):
    """Omega_JS = E_P[(1 - D(x))^2 ||grad v||^2] + E_Q[D(x)^2 ||grad v||^2], D(x) = sigmoid(v)."""
    v_r, g_r = input_grads(D, x_real)
    v_f, g_f = input_grads(D, x_fake)
    d_r, d_f = 1 / (1 + torch.exp(-v_r)), 1 / (1 + torch.exp(-v_f))
    if detach_weights:
        d_r, d_f = d_r.detach(), d_f.detach()
    return ((1 - d_r) ** 2 * sq_norms(g_r)).mean() + (d_f ** 2 * sq_norms(g_f)).mean()


# w_f(v) of docs/design.md section 4, written out again here.
W_F = {
    "kl": lambda v: torch.exp(v - 1),
    "reverse_kl": lambda v: torch.ones_like(v),
    "pearson": lambda v: torch.full_like(v, 0.5),
    "neyman": lambda v: 0.5 * torch.exp(-v / 2),
    "squared_hellinger": lambda v: 2 * torch.exp(v),
    "js": lambda v: 1 / (1 + torch.exp(-v)),
    "gan": lambda v: 1 / (1 + torch.exp(-v)),
}


@pytest.mark.parametrize("sizes", [(5, 5), (5, 3), (2, 6)], ids=["equal", "more-real", "more-fake"])
@pytest.mark.parametrize("backend", ["native", "reference"])
def test_roth_js_equals_the_formula_with_weights_differentiated(sizes, backend):
    fastreg.set_backend(backend)
    D = small_d()
    x_real, x_fake = batches(*sizes)
    omega, v_real, v_fake = regularizers.roth_penalty(D, x_real, x_fake)
    assert_same(D, omega, roth_js_by_formula(D, x_real, x_fake))
    torch.testing.assert_close(v_real, D(x_real).flatten())
    torch.testing.assert_close(v_fake, D(x_fake).flatten())
    # the comparison can tell: stop-gradiented weights give other parameter gradients
    detached = param_grads(D, roth_js_by_formula(D, x_real, x_fake, detach_weights=True))
    assert any(not torch.allclose(a, b, rtol=1e-6) for a, b in zip(param_grads(D, omega), detached))


@pytest.mark.parametrize("alias", ["js", "gan", "ns", "bgan"])
def test_roth_js_aliases_are_one_form(alias):
    D = small_d()
    x_real, x_fake = batches()
    expected = roth_js_by_formula(D, x_real, x_fake)
    torch.testing.assert_close(regularizers.roth_penalty(D, x_real, x_fake, alias).penalty, expected)


@pytest.mark.parametrize("div", list(DIVERGENCES))
def test_roth_omega_f_uses_fake_rows_only(div):
    D = small_d()
    x_real, x_fake = batches(4, 3)
    omega, _, _ = regularizers.roth_penalty(D, x_real, x_fake, f"fgan:{div}")
    v_f, g_f = input_grads(D, x_fake)
    expected = (W_F[div](v_f) * sq_norms(g_f)).mean()
    assert_same(D, omega, expected)
    same = regularizers.roth_penalty(D, x_real * 3, x_fake, f"f:{div}").penalty  # real rows do not enter
    torch.testing.assert_close(same, omega)


def test_roth_d_loss_uses_one_forward():
    calls = []
    D = small_d()
    D.register_forward_hook(lambda *args: calls.append(1))
    x_real, x_fake = batches()
    omega, v_real, v_fake = regularizers.roth_penalty(D, x_real, x_fake)
    loss = fastreg.losses.d_loss("ns", v_real, v_fake) + 2.0 / 2 * omega
    loss.backward()
    assert len(calls) == 1


def test_roth_gradient_reaches_the_generator_when_fakes_are_not_detached():
    D = small_d()
    x_real, x_fake = batches()
    z = x_fake.clone().requires_grad_()
    omega = regularizers.roth_penalty(D, x_real, 2 * z).penalty
    (dz,) = torch.autograd.grad(omega, z)
    (expected,) = torch.autograd.grad(roth_js_by_formula(D, x_real, 2 * z), z)
    torch.testing.assert_close(dz, expected, rtol=1e-10, atol=1e-12)
    assert dz.abs().sum() > 0


def test_roth_unknown_divergence_is_a_value_error():
    D = small_d()
    x_real, x_fake = batches()
    for bad in ("lsgan", "fgan:tv", "kl"):
        with pytest.raises(ValueError, match="divergence"):
            regularizers.roth_penalty(D, x_real, x_fake, bad)


# --- gradient penalties -------------------------------------------------------------------------

@pytest.mark.parametrize("one_sided", [False, True])
@pytest.mark.parametrize("target", [1.0, 0.3])
def test_gradient_penalty_equals_the_formula_on_the_same_interpolates(one_sided, target):
    D = small_d()
    x_real, x_fake = batches()
    got = regularizers.wgan_gp_penalty(D, x_real, x_fake, one_sided=one_sided, target=target,
                                       generator=torch.Generator().manual_seed(5)).penalty
    x_hat = regularizers.random_interpolate(x_real, x_fake, torch.Generator().manual_seed(5))
    _, g = input_grads(D, x_hat)
    excess = torch.sqrt(sq_norms(g)) - target
    if one_sided:
        excess = excess.clamp(min=0)
    assert_same(D, got, (excess ** 2).mean())
    norms = torch.sqrt(sq_norms(g))
    assert (norms > target).any() and (not one_sided or target != 1.0 or (norms < target).any())


def test_random_interpolate_puts_each_row_on_its_segment():
    x_real, x_fake = batches(64, 64)
    x_hat = regularizers.random_interpolate(x_real, x_fake, torch.Generator().manual_seed(0))
    eps = ((x_hat - x_fake) / (x_real - x_fake)).flatten(1)
    torch.testing.assert_close(eps, eps[:, :1].expand_as(eps))  # one epsilon per sample
    assert eps.min() >= 0 and eps.max() <= 1 and eps[:, 0].std() > 0.2  # U[0,1] has std 0.289
    with pytest.raises(ValueError, match="x_fake"):
        regularizers.random_interpolate(x_real, x_fake[:3])


@pytest.mark.parametrize("which", ["r1", "r2"])
def test_r1_r2_equal_the_formula(which):
    D = small_d()
    x_real, x_fake = batches(5, 3)
    x = x_real if which == "r1" else x_fake
    penalty, v_real, v_fake = getattr(regularizers, f"{which}_penalty")(D, x)  # the one result type, Penalty
    logits, other = (v_real, v_fake) if which == "r1" else (v_fake, v_real)
    v, g = input_grads(D, x)
    assert_same(D, penalty, sq_norms(g).mean())
    torch.testing.assert_close(logits, v)
    assert other is None  # D ran on one batch only


def test_penalties_of_a_linear_critic_are_closed_form():
    """For v(x) = <a, x> + b every input gradient is a, so the penalties are known exactly."""
    lin = nn.Sequential(nn.Flatten(), nn.Linear(18, 1)).double()
    with torch.no_grad():
        lin[1].weight.fill_(0.5)  # ||a|| = 0.5 * sqrt(18) = 2.1213...
    x_real, x_fake = batches()
    norm_sq = 0.25 * 18
    assert float(regularizers.r1_penalty(lin, x_real).penalty.detach()) == pytest.approx(norm_sq, rel=1e-12)
    assert float(regularizers.wgan_gp_penalty(lin, x_real, x_fake).penalty.detach()) == pytest.approx(
        (math.sqrt(norm_sq) - 1) ** 2, rel=1e-12)
    v_r, v_f = lin(x_real).flatten().detach(), lin(x_fake).flatten().detach()
    expected = float((torch.sigmoid(-v_r) ** 2).mean() * norm_sq + (torch.sigmoid(v_f) ** 2).mean() * norm_sq)
    assert float(regularizers.roth_penalty(lin, x_real, x_fake).penalty.detach()) == pytest.approx(expected, rel=1e-12)


# --- mixed precision ----------------------------------------------------------------------------

def test_penalties_under_bfloat16_autocast_match_float32():
    """Under torch.autocast(cpu, bfloat16) D's convs and linears run in bfloat16 and the penalty
    (computed in float32) stays within rtol 2e-2 of the float32 value (observed: about 4e-3)."""
    D = small_d(torch.float32)
    x_real, x_fake = batches(8, 8, torch.float32)
    exact_roth = regularizers.roth_penalty(D, x_real, x_fake).penalty
    exact_r1 = regularizers.r1_penalty(D, x_real).penalty
    exact_gp = regularizers.wgan_gp_penalty(D, x_real, x_fake, generator=torch.Generator().manual_seed(3)).penalty
    with torch.autocast("cpu", dtype=torch.bfloat16):
        roth, v_real, _ = regularizers.roth_penalty(D, x_real, x_fake)
        r1 = regularizers.r1_penalty(D, x_real).penalty
        gp = regularizers.wgan_gp_penalty(D, x_real, x_fake, generator=torch.Generator().manual_seed(3)).penalty
    assert v_real.dtype == torch.bfloat16  # D really ran in bfloat16
    for got, exact in ((roth, exact_roth), (r1, exact_r1), (gp, exact_gp)):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, exact, rtol=2e-2, atol=1e-4)
    grads = param_grads(D, roth)
    assert all(torch.isfinite(p).all() for p in grads)


def test_grad_scaler_scales_before_and_unscales_after_autograd_grad():
    D = small_d(torch.float32)
    x_real, x_fake = batches(6, 6, torch.float32)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 14)
    plain = regularizers.roth_penalty(D, x_real, x_fake).penalty
    scaled = regularizers.roth_penalty(D, x_real, x_fake, scaler=scaler).penalty
    torch.testing.assert_close(scaled, plain, rtol=1e-6, atol=0)  # a power of two cancels exactly
    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp = regularizers.r1_penalty(D, x_real, scaler=scaler).penalty
    torch.testing.assert_close(amp, regularizers.r1_penalty(D, x_real).penalty, rtol=2e-2, atol=1e-4)


@pytest.mark.cuda
def test_penalty_under_float16_autocast_with_grad_scaler_on_cuda():
    if not fastreg.backend.has_kernel("cuda"):
        fastreg.set_backend("reference")
    D = small_d(torch.float32).cuda()
    x_real, x_fake = (t.cuda() for t in batches(8, 8, torch.float32))
    exact = regularizers.roth_penalty(D, x_real, x_fake).penalty
    scaler = torch.amp.GradScaler("cuda", init_scale=2.0 ** 8)  # small enough for float16 backward
    with torch.autocast("cuda", dtype=torch.float16):
        got, v_real, _ = regularizers.roth_penalty(D, x_real, x_fake, scaler=scaler)
    assert v_real.dtype == torch.float16 and got.dtype == torch.float32
    torch.testing.assert_close(got, exact, rtol=2e-2, atol=1e-4)


# --- batch norm meets a penalty -----------------------------------------------------------------

def test_wgan_gp_penalty_on_a_batch_norm_critic_warns():
    D = small_d(batch_norm=True)
    x_real, x_fake = batches()
    with pytest.warns(UserWarning, match="BatchNorm"):
        regularizers.wgan_gp_penalty(D, x_real, x_fake)
    D.eval()  # eval-mode batch norm is a per-sample affine map: no warning
    regularizers.wgan_gp_penalty(D, x_real, x_fake)


# --- forward modes: joint vs separate real/fake forwards --------------------------------------------

@pytest.mark.parametrize("divergence", ["js", "fgan:kl"])
@pytest.mark.parametrize("sizes", [(5, 5), (3, 6)])
def test_joint_and_separate_forwards_agree_without_batch_norm(divergence, sizes):
    D = small_d()
    x_real, x_fake = batches(*sizes)
    joint = regularizers.roth_penalty(D, x_real, x_fake, divergence, forward="joint")
    separate = regularizers.roth_penalty(D, x_real, x_fake, divergence, forward="separate")
    assert_same(D, separate.penalty, joint.penalty)
    torch.testing.assert_close(separate.v_real, joint.v_real, rtol=1e-12, atol=0)
    torch.testing.assert_close(separate.v_fake, joint.v_fake, rtol=1e-12, atol=0)
    assert regularizers.resolve_forward(D, "auto") == "joint"


def test_separate_forwards_on_a_batch_norm_d_equal_two_hand_written_forwards():
    D = small_d(batch_norm=True)
    x_real, x_fake = batches(5, 4)
    assert regularizers.resolve_forward(D, "auto") == "separate"
    got = regularizers.roth_penalty(D, x_real, x_fake)  # auto: separate
    v_r, g_r = input_grads(D, x_real)  # per-batch statistics: D called on each batch alone
    v_f, g_f = input_grads(D, x_fake)
    expected = ((1 - torch.sigmoid(v_r)) ** 2 * sq_norms(g_r)).mean() + (torch.sigmoid(v_f) ** 2 * sq_norms(g_f)).mean()
    assert_same(D, got.penalty, expected)
    torch.testing.assert_close(got.v_real, v_r, rtol=1e-12, atol=0)
    # The joint forward would mix the two batches' statistics: different logits, so it is refused.
    with torch.no_grad():
        mixed = D(torch.cat([x_real, x_fake]))[:5].flatten()
    assert (mixed - v_r).abs().max() > 1e-3


def test_joint_forward_on_a_batch_norm_d_is_refused_naming_forward():
    D = small_d(batch_norm=True)
    x_real, x_fake = batches()
    with pytest.raises(ValueError, match="forward='joint'.*batch norm"):
        regularizers.roth_penalty(D, x_real, x_fake, forward="joint")
    with pytest.raises(ValueError, match="forward must be one of"):
        regularizers.roth_penalty(D, x_real, x_fake, forward="mixed")
    D.eval()  # eval-mode batch norm does not couple the batch: joint is fine
    assert regularizers.resolve_forward(D, "joint") == "joint"


def test_a_submodule_can_declare_that_it_couples_the_batch():
    class MinibatchStd(nn.Module):
        couples_batch = True

        def forward(self, x):
            return x + x.std(dim=0, keepdim=True)

    D = nn.Sequential(MinibatchStd(), small_d())
    assert regularizers.couples_batch(D) is True
    assert regularizers.resolve_forward(D, "auto") == "separate"
    assert regularizers.couples_batch(lambda x: x.sum(dim=(1, 2, 3))) is None  # a plain function: unknown
    assert regularizers.resolve_forward(lambda x: x.sum(dim=(1, 2, 3)), "auto") == "separate"


# --- instance noise -----------------------------------------------------------------------------

def test_instance_noise_statistics_and_identity_gradient():
    x = torch.randn(64, 3, 16, 16, dtype=torch.float64).requires_grad_()
    y = regularizers.instance_noise(x, 0.5, generator=torch.Generator().manual_seed(0))
    xi = ((y - x) / 0.5).detach()
    assert abs(float(xi.mean())) < 0.01 and abs(float(xi.std()) - 1) < 0.01  # 49152 draws
    (dx,) = torch.autograd.grad((y * 3).sum(), x)
    torch.testing.assert_close(dx, torch.full_like(x, 3.0))


def test_instance_noise_per_sample_sigma_and_reproducibility():
    x = torch.zeros(4, 5, dtype=torch.float64)
    sigma = torch.tensor([0.0, 1.0, 2.0, 0.5], dtype=torch.float64)
    y = regularizers.instance_noise(x, sigma, generator=torch.Generator().manual_seed(3))
    unit = regularizers.instance_noise(x, 1.0, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(y, unit * sigma[:, None])
    assert regularizers.instance_noise(x, 0.0) is x
    with pytest.raises(ValueError, match="sigma"):
        regularizers.instance_noise(x, torch.ones(3))
    with pytest.raises(ValueError, match="sigma"):
        regularizers.instance_noise(x, -1.0)


# --- WGAN clipping and lazy regularization ------------------------------------------------------

def test_clip_weights_clamps_every_parameter():
    D = small_d()
    with torch.no_grad():
        D[0].weight[0, 0, 0, 0] = 3.0
        D[0].bias[0] = -2.0
    before = [p.clone() for p in D.parameters()]
    regularizers.clip_weights_(D, 0.01)
    for b, p in zip(before, D.parameters()):
        torch.testing.assert_close(p, b.clamp(-0.01, 0.01))
    assert D[0].weight[0, 0, 0, 0].item() == 0.01 and D[0].bias[0].item() == -0.01
    with pytest.raises(ValueError, match="bound"):
        regularizers.clip_weights_(D, 0.0)


def test_lazy_regularization_keeps_the_average_weight():
    lazy = regularizers.LazyRegularization(every=4)
    applied = [lazy(step, 0.05) for step in range(16)]
    assert applied[0] == pytest.approx(0.2) and applied[4] == pytest.approx(0.2)
    assert [lazy.due(s) for s in range(6)] == [True, False, False, False, True, False]
    assert sum(applied) == pytest.approx(16 * 0.05)
    assert regularizers.LazyRegularization().weight(0.05) == 0.05
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="every"):
            regularizers.LazyRegularization(every=bad)


def test_grad_penalty_docstring_example_for_unequal_batches():
    """The docstring's Omega_JS (sum of the two batch means) equals roth_penalty for 3 real and 6 fake rows;
    the one-call form on concatenated rows (the old example) does not."""
    D = small_d()
    x_real, x_fake = batches(3, 6)
    xr, xf = x_real.detach().requires_grad_(), x_fake.detach().requires_grad_()
    v_real, v_fake = D(xr).flatten(), D(xf).flatten()
    g_real, g_fake = torch.autograd.grad(v_real.sum() + v_fake.sum(), (xr, xf), create_graph=True)
    omega = (fastreg.grad_penalty(g_real, v_real, weight="roth_js", num_real=3)
             + fastreg.grad_penalty(g_fake, v_fake, weight="roth_js", num_real=0))
    assert_same(D, omega, regularizers.roth_penalty(D, x_real, x_fake).penalty)
    concatenated = 2 * fastreg.grad_penalty(torch.cat([g_real, g_fake]), torch.cat([v_real, v_fake]),
                                            weight="roth_js", num_real=3)
    assert abs(concatenated.item() - omega.item()) > 1e-3 * abs(omega.item())
