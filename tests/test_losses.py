"""fastreg.losses against hand computations written literally from the papers, in 60-digit mpmath.

The hand forms use D = 1/(1 + e^-v), log D, log(1 - D) and the f-GAN conjugates f*(t) applied to
the activation t = g_f(v) exactly as printed (Goodfellow 2014, Mao 2017, Arjovsky 2017,
Nowozin 2016 Table 2 in the logit parametrization of docs/design.md section 4, Hjelm 2018, Grewal
2018). With 60 digits those naive forms are exact even at |v| = 50, where the same forms in
float32 overflow.
"""

import mpmath
import pytest
import torch

from fastreg import losses
from fastreg.divergences import DIVERGENCES

mpmath.mp.dps = 60
mp = mpmath.mpf

V_REAL = [-50.0, -2.5, 0.0, 0.7, 3.0, 50.0]
V_FAKE = [-50.0, -1.0, 0.3, 2.0, 50.0]   # a different batch size on purpose
MODERATE_REAL = [-3.0, -0.4, 0.0, 1.1, 2.5]
MODERATE_FAKE = [-2.0, -0.7, 0.2, 1.5]


def D(v):
    return 1 / (1 + mpmath.exp(-v))


def mean(values):
    values = list(values)
    return mpmath.fsum(values) / len(values)


# f-GAN (Nowozin et al. 2016, Table 2): activation g_f(v) and conjugate f*(t), logit form.
ACTIVATION = {
    "kl": lambda v: v,
    "reverse_kl": lambda v: -mpmath.exp(-v),
    "pearson": lambda v: v,
    "neyman": lambda v: 1 - mpmath.exp(-v),
    "squared_hellinger": lambda v: 1 - mpmath.exp(-v),
    "js": lambda v: mpmath.log(2) - mpmath.log(1 + mpmath.exp(-v)),
    "gan": lambda v: -mpmath.log(1 + mpmath.exp(-v)),
}
CONJUGATE = {
    "kl": lambda t: mpmath.exp(t - 1),
    "reverse_kl": lambda t: -1 - mpmath.log(-t),
    "pearson": lambda t: t * t / 4 + t,
    "neyman": lambda t: 2 - 2 * mpmath.sqrt(1 - t),
    "squared_hellinger": lambda t: t / (1 - t),
    "js": lambda t: -mpmath.log(2 - mpmath.exp(t)),
    "gan": lambda t: -mpmath.log(1 - mpmath.exp(t)),
}


def meta_real_mp(y):
    return mp("0.5") * y - mp("0.3")


def meta_fake_mp(y):
    return -mp("0.25") * y + mp("0.1")


def meta_real_torch(y):
    return 0.5 * y - 0.3


def meta_fake_torch(y):
    return -0.25 * y + 0.1


def sp(u):
    return mpmath.log(1 + mpmath.exp(u))


def hand_d_loss(variant, vr, vf, a=0.0, b=1.0):
    vr, vf = [mp(x) for x in vr], [mp(x) for x in vf]
    if variant in ("gan", "ns", "bgan"):
        return -mean(mpmath.log(D(v)) for v in vr) - mean(mpmath.log(1 - D(v)) for v in vf)
    if variant == "lsgan":
        return mean((v - b) ** 2 / 2 for v in vr) + mean((v - a) ** 2 / 2 for v in vf)
    if variant in ("wgan", "wgan-gp"):
        return mean(vf) - mean(vr)
    if variant == "vral":
        return mean(sp(-meta_fake_mp(v)) for v in vf) + mean(sp(-meta_real_mp(v)) for v in vr)
    div = variant.split(":")[1]
    return -mean(ACTIVATION[div](v) for v in vr) + mean(CONJUGATE[div](ACTIVATION[div](v)) for v in vf)


def hand_g_loss(variant, vf, c=1.0, mu_real=1.0):
    vf = [mp(x) for x in vf]
    if variant == "gan":
        return mean(mpmath.log(1 - D(v)) for v in vf)
    if variant == "ns":
        return -mean(mpmath.log(D(v)) for v in vf)
    if variant == "lsgan":
        return mean((v - c) ** 2 / 2 for v in vf)
    if variant in ("wgan", "wgan-gp"):
        return -mean(vf)
    if variant == "bgan":
        return mean((mpmath.log(D(v)) - mpmath.log(1 - D(v))) ** 2 / 2 for v in vf)
    if variant == "vral":
        return mean((v - mu_real) ** 2 for v in vf)
    return -mean(ACTIVATION[variant.split(":")[1]](v) for v in vf)


def options_for(variant):
    return {"meta_real": meta_real_torch, "meta_fake": meta_fake_torch} if variant == "vral" else {}


ALL = losses.available()


def test_available_lists_every_divergence():
    assert ALL[:7] == ["gan", "ns", "lsgan", "wgan", "wgan-gp", "bgan", "vral"]
    assert sorted(ALL[7:]) == sorted(f"fgan:{d}" for d in DIVERGENCES)


@pytest.mark.parametrize("variant", ALL)
def test_d_loss_matches_hand_computation_float64(variant):
    vr, vf = torch.tensor(MODERATE_REAL, dtype=torch.float64), torch.tensor(MODERATE_FAKE, dtype=torch.float64)
    got = losses.d_loss(variant, vr, vf, **options_for(variant))
    assert got.dtype == torch.float64 and got.dim() == 0
    assert float(got) == pytest.approx(float(hand_d_loss(variant, MODERATE_REAL, MODERATE_FAKE)), rel=1e-13, abs=1e-13)


@pytest.mark.parametrize("variant", ALL)
def test_g_loss_matches_hand_computation_float64(variant):
    vf = torch.tensor(MODERATE_FAKE, dtype=torch.float64)
    got = losses.g_loss(variant, vf)
    assert float(got) == pytest.approx(float(hand_g_loss(variant, MODERATE_FAKE)), rel=1e-13, abs=1e-13)


@pytest.mark.parametrize("variant", ALL)
def test_d_and_g_loss_at_extreme_logits_float32(variant):
    """|v| = 50: every loss stays finite in float32 and matches the exact value to float32 precision."""
    vr, vf = torch.tensor(V_REAL), torch.tensor(V_FAKE)
    d = losses.d_loss(variant, vr, vf, **options_for(variant))
    g = losses.g_loss(variant, vf)
    assert torch.isfinite(d) and torch.isfinite(g)
    assert float(d) == pytest.approx(float(hand_d_loss(variant, V_REAL, V_FAKE)), rel=2e-6, abs=1e-5)
    assert float(g) == pytest.approx(float(hand_g_loss(variant, V_FAKE)), rel=2e-6, abs=1e-5)


def test_naive_forms_overflow_where_the_stable_ones_do_not():
    v = torch.tensor([50.0, -50.0])
    naive_d_fake = -torch.log(1 - torch.sigmoid(v)).mean()      # log(1 - D) at v = 50: log(0)
    naive_bgan = 0.5 * (torch.log(torch.sigmoid(v)) - torch.log(1 - torch.sigmoid(v))).square().mean()
    assert torch.isinf(naive_d_fake) and torch.isinf(naive_bgan)
    # the stable ones: E softplus(v) = (50 + log1p(e^-50) + log1p(e^-50)) / 2, and (50^2 + 50^2)/4
    assert float(losses.d_loss("gan", torch.tensor([50.0]), v)) == pytest.approx(25.0, rel=1e-6)
    assert float(losses.g_loss("bgan", v)) == pytest.approx(1250.0, rel=1e-7)


def test_gradients_at_extreme_logits_are_exact():
    """d/dv of the non-saturating G loss at v = -50 is -sigma(50)/B ~ -1/B (no vanishing, no NaN)."""
    vf = torch.tensor([-50.0, 0.0, 50.0], requires_grad=True)
    (grad,) = torch.autograd.grad(losses.g_loss("ns", vf), vf)
    expected = [-float(D(mp(50))) / 3, -0.5 / 3, -float(D(mp(-50))) / 3]
    torch.testing.assert_close(grad, torch.tensor(expected), rtol=1e-6, atol=0)
    (grad,) = torch.autograd.grad(losses.g_loss("gan", vf), vf)  # minimax: -sigma(v)/B, saturates at -50
    torch.testing.assert_close(grad, torch.tensor([-float(D(mp(-50))) / 3, -0.5 / 3, -1 / 3]), rtol=1e-6, atol=0)


def test_lsgan_targets_are_configurable():
    vr, vf = torch.tensor([0.5, 2.0], dtype=torch.float64), torch.tensor([-1.0, 0.25], dtype=torch.float64)
    got = losses.d_loss("lsgan", vr, vf, a=-1.0, b=1.0, c=0.0)
    expected = ((0.5 - 1) ** 2 + (2 - 1) ** 2) / 4 + ((-1 + 1) ** 2 + (0.25 + 1) ** 2) / 4
    assert float(got) == pytest.approx(expected, rel=1e-14)
    assert float(losses.g_loss("lsgan", vf, a=-1.0, b=1.0, c=0.0)) == pytest.approx((1 + 0.0625) / 4, rel=1e-14)
    assert float(losses.g_loss("lsgan", vf, c=0.5)) == pytest.approx(((1.5) ** 2 + 0.25 ** 2) / 4, rel=1e-14)


def test_vral_g_loss_mu_real_option():
    vf = torch.tensor([0.0, 2.0, -1.0], dtype=torch.float64)
    assert float(losses.g_loss("vral", vf, mu_real=-1.0)) == pytest.approx((1 + 9 + 0) / 3, rel=1e-14)


def test_vral_meta_loss_by_hand():
    m_prior = torch.tensor([1.0, -2.0], dtype=torch.float64)
    m_y = torch.tensor([0.5, 0.0, -3.0], dtype=torch.float64)
    expected = mean(sp(-mp(x)) for x in [1.0, -2.0]) + mean(sp(mp(x)) for x in [0.5, 0.0, -3.0])
    assert float(losses.vral_meta_loss_from_logits(m_prior, m_y)) == pytest.approx(float(expected), rel=1e-14)


def test_vral_meta_loss_draws_prior_samples_around_mu():
    y = torch.tensor([0.3, -0.8, 1.2, 0.0], dtype=torch.float64)
    got = losses.vral_meta_loss(meta_real_torch, y, mu=1.0, generator=torch.Generator().manual_seed(7))
    u = 1.0 + torch.randn(4, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    expected = mean(sp(-meta_real_mp(mp(float(x)))) for x in u) + mean(sp(meta_real_mp(mp(float(x)))) for x in y)
    assert float(got) == pytest.approx(float(expected), rel=1e-13)
    # the prior samples have mean mu and unit variance
    big = losses.vral_meta_loss(lambda t: t, torch.zeros(200_000, dtype=torch.float64), mu=-1.0,
                                generator=torch.Generator().manual_seed(1))
    # E softplus(-u) for u ~ N(-1, 1) is 1.3543... (numerical integral), plus softplus(0) = log 2
    exact = mpmath.quad(lambda u: sp(-u) * mpmath.npdf(u, -1, 1), [-mpmath.inf, mpmath.inf]) + mpmath.log(2)
    assert float(big) == pytest.approx(float(exact), abs=5e-3)


@pytest.mark.parametrize("bad", ["gann", "fgan:tv", "fgan:", "WGAN", None])
def test_unknown_variant_is_a_value_error_naming_it(bad):
    with pytest.raises(ValueError, match="variant"):
        losses.d_loss(bad, torch.zeros(2), torch.zeros(2))
    with pytest.raises(ValueError, match="variant"):
        losses.g_loss(bad, torch.zeros(2))


def test_bad_options_are_value_errors_naming_them():
    z = torch.zeros(3)
    with pytest.raises(ValueError, match="'gamma' for variant 'ns'"):
        losses.d_loss("ns", z, z, gamma=1.0)
    with pytest.raises(ValueError, match="'d' for variant 'lsgan'"):
        losses.g_loss("lsgan", z, d=1.0)
    with pytest.raises(ValueError, match="meta_fake"):
        losses.d_loss("vral", z, z, meta_real=meta_real_torch)
    with pytest.raises(ValueError, match="v_fake"):
        losses.d_loss("gan", z, torch.zeros(0))
    with pytest.raises(ValueError, match="v_real"):
        losses.d_loss("gan", torch.zeros(2, dtype=torch.long), z)


@pytest.mark.parametrize("variant,adversarial", [
    ("gan", lambda v: -mpmath.log(1 - D(v))), ("ns", lambda v: -mpmath.log(1 - D(v))),
    ("bgan", lambda v: -mpmath.log(1 - D(v))), ("lsgan", lambda v: v * v),
    ("wgan", lambda v: v), ("wgan-gp", lambda v: v)])
def test_lens_loss_by_hand(variant, adversarial):
    v = [-50.0, 0.4, 3.0, 50.0]
    x = torch.tensor([[[1.0, 2.0]], [[0.0, 0.0]], [[-1.0, 0.5]], [[3.0, 3.0]]], dtype=torch.float64)
    x_lensed = x + torch.tensor([[[0.5, 0.0]], [[0.0, -1.0]], [[0.0, 0.0]], [[2.0, 1.0]]], dtype=torch.float64)
    got = losses.lens_loss(variant, torch.tensor(v, dtype=torch.float64), x, x_lensed, lam=0.3)
    distortion = (0.25 + 1.0 + 0.0 + 5.0) / 4
    expected = mp("0.3") * mean(adversarial(mp(u)) for u in v) + mp(distortion)
    assert float(got) == pytest.approx(float(expected), rel=1e-13)


def test_lens_loss_errors():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="fgan:kl"):
        losses.lens_loss("fgan:kl", torch.zeros(2), x, x, 1.0)
    with pytest.raises(ValueError, match="x_lensed"):
        losses.lens_loss("ns", torch.zeros(2), x, torch.zeros(2, 4), 1.0)
