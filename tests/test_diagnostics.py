"""Diagnostics against closed forms (linear and quadratic D, linear G), hand-built cross-tests, and
`fastreg diagnose` / `fastreg fid` end to end on tiny runs."""

import copy
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn

from fastreg import data, losses, regularizers
from fastreg.diagnostics import (Confusion, RealSampler, confusion, cross_test, generator_gradient_norms,
                                 interpolation_profile, output_histograms, overlap_coefficient, train_discriminator,
                                 vanishing_gradients)
from fastreg.train.config import TrainConfig
from fastreg.train.metrics_log import read_metrics
from fastreg.train.trainer import train


class Affine(nn.Module):
    """x -> scale * x + shift, one output per sample for 1-D inputs; a G when z_dim is set."""

    def __init__(self, scale, shift, z_dim=None):
        super().__init__()
        self.weight = nn.Parameter(torch.as_tensor(scale, dtype=torch.float64).reshape(1, -1).clone())
        self.bias = nn.Parameter(torch.tensor([float(shift)], dtype=torch.float64))
        self.z_dim = z_dim

    def forward(self, x):
        out = x.double() @ self.weight.T + self.bias
        return out if self.z_dim else out.reshape(-1)


def test_interpolation_profile_of_a_linear_d():
    D = nn.Linear(6, 1).double()
    g = torch.Generator().manual_seed(0)
    x_r = torch.randn(10, 6, generator=g, dtype=torch.float64)
    x_f = torch.randn(10, 6, generator=g, dtype=torch.float64)
    profile = interpolation_profile(D, x_r, x_f)
    assert profile["t"][0] == -0.5 and profile["t"][-1] == 1.5 and len(profile["t"]) == 41
    with torch.no_grad():
        v_r, v_f = D(x_r).mean().item(), D(x_f).mean().item()
    for t, v, n in zip(profile["t"], profile["mean_logit"], profile["mean_grad_norm"]):
        assert v == pytest.approx(t * v_r + (1 - t) * v_f, abs=1e-12)  # v is linear in t
        assert n == pytest.approx(D.weight.norm().item(), rel=1e-12)    # grad = w everywhere


def test_interpolation_profile_of_a_quadratic_d():
    class Quadratic(nn.Module):
        def __init__(self):
            super().__init__()
            self.unused = nn.Parameter(torch.zeros((), dtype=torch.float64))

        def forward(self, x):
            return x.square().sum(1)

    x_r, x_f = torch.tensor([[3.0, 4.0]], dtype=torch.float64), torch.tensor([[0.0, 0.0]], dtype=torch.float64)
    profile = interpolation_profile(Quadratic(), x_r, x_f, ts=torch.tensor([-0.5, 0.0, 0.5, 1.0]))
    # x(t) = t (3, 4): v = 25 t^2, ||grad|| = ||2 x(t)|| = 10 |t|
    assert profile["mean_logit"] == pytest.approx([6.25, 0.0, 6.25, 25.0])
    assert profile["mean_grad_norm"] == pytest.approx([5.0, 0.0, 5.0, 10.0])


def test_output_histograms_count_and_score():
    v_real, v_fake = torch.tensor([1.0, 2.0, 3.0, -1.0]), torch.tensor([-2.0, -1.0, 0.5])
    h = output_histograms(v_real, v_fake, bins=5)  # bins of width 1 on [-2, 3]
    assert h["edges"] == pytest.approx([-2, -1, 0, 1, 2, 3])
    assert (h["real"], h["fake"]) == ([0, 1, 0, 1, 2], [1, 1, 1, 0, 0])
    assert h["accuracy"] == pytest.approx(5 / 7)  # 3 real called real, 2 fake called fake
    assert (h["real_mean"], h["fake_mean"]) == (pytest.approx(1.25), pytest.approx(-2.5 / 3))
    # masses real (0, 1/4, 0, 1/4, 1/2), fake (1/3, 1/3, 1/3, 0, 0): overlap min(1/4, 1/3) in bin 2 only
    assert h["overlap"] == pytest.approx(0.25, abs=1e-15)


def test_overlap_coefficient_identical_disjoint_and_partial():
    assert overlap_coefficient([3, 0, 5, 2], [3, 0, 5, 2]) == 1.0
    assert overlap_coefficient([1, 2, 3], [2, 4, 6]) == 1.0  # proportional counts: the same masses
    assert overlap_coefficient([4, 6, 0, 0], [0, 0, 1, 9]) == 0.0
    # p = (0.5, 0.5, 0), q = (0.2, 0.3, 0.5): min = 0.2 + 0.3 + 0
    assert overlap_coefficient([1, 1, 0], [2, 3, 5]) == pytest.approx(0.5, abs=1e-15)
    v = torch.randn(500, generator=torch.Generator().manual_seed(0))
    assert output_histograms(v, v.clone())["overlap"] == 1.0
    assert output_histograms(v.abs() + 1, -v.abs() - 1)["overlap"] == 0.0
    with pytest.raises(ValueError, match="q: expected 2 bins"):
        overlap_coefficient([1, 2], [1, 2, 3])


def test_cross_test_on_hand_built_models():
    # G_a puts every sample at +1, G_b at -1; D_a calls x > 0.5 real, D_b calls x > -2 real.
    G_a, G_b = Affine([0.0], 1.0, z_dim=1), Affine([0.0], -1.0, z_dim=1)
    D_a, D_b = Affine([1.0], -0.5), Affine([1.0], 2.0)
    real = torch.tensor([[2.0], [0.0], [-3.0], [1.0]], dtype=torch.float64)
    result = cross_test(G_a, D_a, G_b, D_b, real, samples=50)
    assert tuple(result.confusion_a) == (2, 2, 50, 0)   # real 2 and 1 called real; all own fakes (+1) fooled it
    assert tuple(result.confusion_b) == (3, 1, 50, 0)
    assert (result.confusion_a.real_rate, result.confusion_a.fake_rate) == (0.5, 0.0)
    assert result.confusion_a.balanced_accuracy == pytest.approx(0.25)
    assert result.confusion_b.balanced_accuracy == pytest.approx((3 / 4 + 0) / 2)
    assert (result.cross_false_positive_a, result.cross_false_positive_b) == (0.0, 1.0)
    assert tuple(confusion(torch.tensor([1.0, -1.0]), torch.tensor([0.0]))) == (1, 1, 0, 1)  # v = 0 is fake


def test_cross_test_accuracy_is_balanced_between_unequal_sample_counts():
    """Issue 16's case: 1,797 reals, 10,000 own fakes; D calls 98% of the reals and every fake fake. Pooled, that
    read 0.85; balanced it is 0.51, with both rates reported."""
    conf = Confusion(real_called_real=36, real_called_fake=1761, fake_called_real=0, fake_called_fake=10_000)
    assert (36 + 10_000) / (1797 + 10_000) == pytest.approx(0.8507, abs=1e-4)
    assert conf.real_rate == pytest.approx(36 / 1797) and conf.fake_rate == 1.0
    assert conf.balanced_accuracy == pytest.approx((36 / 1797 + 1) / 2) and conf.balanced_accuracy < 0.52
    assert not hasattr(conf, "accuracy")


def test_generator_gradient_norms_match_the_closed_form():
    """G(z) = W z + b, D(x) = a.x + c: for the minimax cost -mean softplus(v), dC/dv_i = -sigmoid(v_i)/B;
    for -log D, mean softplus(-v), dC/dv_i = -sigmoid(-v_i)/B; then dC/db = sum_i dC/dv_i a and
    dC/dW = sum_i dC/dv_i a z_i^T."""
    g = torch.Generator().manual_seed(1)
    W, b = torch.randn(2, 3, generator=g, dtype=torch.float64), torch.randn(2, generator=g, dtype=torch.float64)
    a, c = torch.tensor([0.7, -1.3], dtype=torch.float64), 0.4
    G = nn.Linear(3, 2).double()
    D = nn.Linear(2, 1).double()
    with torch.no_grad():
        G.weight.copy_(W), G.bias.copy_(b), D.weight.copy_(a[None]), D.bias.fill_(c)
    G.z_dim = 3
    z = torch.randn(8, 3, generator=g, dtype=torch.float64)
    v = (z @ W.T + b) @ a + c
    expected = []
    for dv in (-torch.sigmoid(v) / 8, -torch.sigmoid(-v) / 8):
        grad_b, grad_W = dv.sum() * a, torch.outer(a, dv @ z)
        expected.append(math.sqrt(grad_b.square().sum() + grad_W.square().sum()))
    assert generator_gradient_norms(G, D, z) == pytest.approx(expected, rel=1e-12)


def test_minimax_gradient_vanishes_as_d_separates():
    """Arjovsky & Bottou Thm 2.4 on a 1-D example: fakes at -1, D_s(x) = s x; as s grows D gets optimal and
    ||grad E log(1 - D(G(z)))|| -> 0, while the -log D cost's gradient grows."""
    G = Affine([0.01], -1.0, z_dim=1)
    z = torch.randn(64, 1, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    norms = [generator_gradient_norms(G, Affine([s], 0.0), z) for s in (1.0, 5.0, 20.0)]
    minimax, nonsat = zip(*norms)
    assert minimax[0] > minimax[1] > minimax[2] and minimax[2] < 1e-7
    assert nonsat[0] < nonsat[1] < nonsat[2]


def _replay_d_steps(loss_variant, **train_kwargs):
    """train_discriminator's D after 3 steps, and a copy trained by hand-written steps of ``variant``'s loss."""
    mixture = data.get_dataset("ring8", seed=3)
    G = nn.Sequential(nn.Linear(2, 2)).double()
    G.z_dim = 2
    D = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    D_ref = copy.deepcopy(D)
    seen = []
    train_discriminator(D, G, RealSampler(mixture), 3, torch.Generator().manual_seed(4), batch_size=16,
                        on_step=lambda t, d: seen.append(t), **train_kwargs)
    assert seen == [0, 1, 2, 3]
    replay_real, replay = data.get_dataset("ring8", seed=3), torch.Generator().manual_seed(4)
    optimizer = torch.optim.Adam(D_ref.parameters(), lr=2e-4, betas=(0.5, 0.999))
    for _ in range(3):
        with torch.no_grad():
            fake = G(torch.randn(16, 2, generator=replay).double())
        real = replay_real.sample(16).double()
        sigma = train_kwargs.get("noise", 0.0)
        if sigma:  # x + sigma xi on both inputs, from the latents' generator
            real, fake = (regularizers.instance_noise(x, sigma, replay) for x in (real, fake))
        loss = losses.d_loss(loss_variant, D_ref(real).reshape(-1), D_ref(fake).reshape(-1))
        if loss_variant == "wgan-gp":  # lambda = 10, interpolation weights from the same generator
            loss = loss + 10 * regularizers.wgan_gp_penalty(D_ref, real, fake, generator=replay).penalty
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if loss_variant == "wgan":
            with torch.no_grad():
                for p in D_ref.parameters():
                    p.clamp_(-0.01, 0.01)
    return D, D_ref


@pytest.mark.parametrize("variant", ["ns", "lsgan", "wgan", "wgan-gp", "bgan", "fgan:kl"])
def test_train_discriminator_equals_hand_written_steps(variant):
    kwargs = {} if variant == "ns" else {"variant": variant}  # ns: the default, as older callers use it
    D, D_ref = _replay_d_steps(variant, **kwargs)
    for p, q in zip(D.parameters(), D_ref.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-14)
    if variant == "wgan":
        assert max(p.abs().max().item() for p in D.parameters()) <= 0.01


def test_train_discriminator_noise_is_instance_noise_on_both_inputs():
    D, D_ref = _replay_d_steps("ns", noise=0.5)
    for p, q in zip(D.parameters(), D_ref.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-14)
    D_clean, _ = _replay_d_steps("ns")
    assert not torch.equal(D.state_dict()["0.weight"], D_clean.state_dict()["0.weight"])


def test_train_discriminator_rejects_vral_and_unknown_variants():
    G, D = nn.Linear(2, 2), nn.Linear(2, 1)
    G.z_dim = 2
    real = RealSampler(data.get_dataset("ring8"))
    with pytest.raises(ValueError, match="variant: 'vral'"):
        train_discriminator(D, G, real, 1, torch.Generator(), variant="vral")
    with pytest.raises(ValueError, match="unknown variant 'wgan-xx'"):
        train_discriminator(D, G, real, 1, torch.Generator(), variant="wgan-xx")


class Offset(nn.Module):
    """A generator of points around (4, 4), off the ring8 mixture (radius 2): separable toy data."""

    z_dim = 2

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)

    def forward(self, z):
        return self.lin(z) + 4.0


def test_minimax_gradient_vanishes_as_a_trained_d_improves_unless_noise(one_thread):
    """Arjovsky & Bottou Thm 2.4 with a trained D: on separable data the fresh D becomes perfect and
    ||grad E log(1 - D(G(z)))|| falls by over 10x; with instance noise (sigma = 3, Sec. 3.1) the noisy
    distributions overlap, D stays imperfect and the final gradient is far larger."""
    ring = RealSampler(data.get_dataset("ring8", seed=0))
    runs = {}
    for sigma in (0.0, 3.0):
        torch.manual_seed(0)
        G, D = Offset(), nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1))
        runs[sigma], _ = vanishing_gradients(G, D, ring, d_steps=300, every=100, batches=2, noise=sigma, lr=3e-2)
    clean, noisy = runs[0.0], runs[3.0]
    assert clean[-1].d_accuracy == 1.0 and clean[-1].minimax_mean < clean[0].minimax_mean / 10
    assert clean[-1].minimax_mean < clean[1].minimax_mean < clean[0].minimax_mean  # falls as D improves
    assert clean[-1].nonsat_mean > clean[0].nonsat_mean  # the -log D cost's gradient does not vanish
    assert noisy[-1].d_accuracy < 0.9 and noisy[-1].minimax_mean > 10 * clean[-1].minimax_mean


def test_vanishing_gradients_records_and_leaves_g_alone():
    mixture = data.get_dataset("ring8")
    G = nn.Linear(2, 2)
    G.z_dim = 2
    before = copy.deepcopy(G.state_dict())
    D = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1))
    first_records_d = copy.deepcopy(D)
    records, trained = vanishing_gradients(G, D, RealSampler(mixture), d_steps=10, every=4, batches=3)
    assert [r.d_step for r in records] == [0, 4, 8, 10]
    probe = torch.Generator().manual_seed(1)
    z = [torch.randn(64, 2, generator=probe) for _ in range(3)]
    initial = np.array([generator_gradient_norms(G, first_records_d, zi) for zi in z])
    assert records[0].minimax_mean == pytest.approx(initial[:, 0].mean(), rel=1e-6)
    assert records[0].nonsat_std == pytest.approx(initial[:, 1].std(ddof=1), rel=1e-5)
    assert trained is D and all(torch.equal(before[k], v) for k, v in G.state_dict().items())
    assert all(p.grad is None for p in G.parameters())


# --- end to end ------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("diagnose")
    common = dict(steps=4, batch_size=16, log_every=2, sample_every=1000, checkpoint_every=2, ema=0.5)
    runs = {}
    for name, reg in (("toy", "none"), ("toy-roth", "roth")):
        runs[name] = train(TrainConfig(data="misspecified3d", model="mlp", z_dim=4, reg=reg, out=str(root / name),
                                       **common))
    runs["digits"] = train(TrainConfig(data="digits", resolution=8, width=8, z_dim=8, out=str(root / "digits"),
                                       eval_every=4, eval_samples=64, **common))
    return runs


def run_cli(*args):
    env = {k: v for k, v in os.environ.items() if k != "FASTREG_INCEPTION_WEIGHTS"}
    return subprocess.run([sys.executable, "-m", "fastreg", *args], capture_output=True, text=True,
                          env={**env, "PYTHONPATH": os.getcwd()})


QUICK = ["--k", "3", "--d-steps", "6", "--record-every", "3", "--samples", "64", "--cross-samples", "100"]


def test_diagnose_cli_writes_report_with_cross_test(tiny_runs, tmp_path):
    out = tmp_path / "report"
    result = run_cli("diagnose", tiny_runs["toy"], "--other", tiny_runs["toy-roth"], "--out", str(out),
                     "--all-checkpoints", *QUICK)
    assert result.returncode == 0, result.stderr
    report = (out / "report.md").read_text()
    # the names the README promises (issue 16: `all` wrote d_output_histograms.png, vanishing_gradients.png)
    written = {"histograms.png", "interpolation.png", "vanishing.png", "cross-test.png", "diagnostics.json",
               "report.md"}
    assert {p.name for p in out.iterdir()} == written
    readme = " ".join(open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read().split())
    promised = readme[readme.index("`fastreg diagnose all RUN`"):][:400]
    assert all(f"`{name}`" in promised for name in written), promised
    for figure in ("histograms.png", "interpolation.png", "vanishing.png", "cross-test.png"):
        assert figure in report
    # not a terminal: a line per stage, then the summary
    stages = ["sample quality", "vanishing gradients", "D histograms and interpolation", "cross-test",
              "figures and report"]
    lines = result.stdout.splitlines()
    assert [line.partition(" done")[0] for line in lines[:-1]] == [f"fastreg diagnose: {s}" for s in stages]
    assert lines[-1].startswith(f"fastreg diagnose: report written to {out / 'report.md'} (")
    results = json.loads((out / "diagnostics.json").read_text())
    assert set(results["vanishing_gradients"]) == {"G at step 2", "G at step 4"}
    assert [r["d_step"] for r in results["vanishing_gradients"]["G at step 4"]] == [0, 3, 6]
    assert set(results["histograms"]) == {"run's D", "run's D + 3 D steps", "fresh D (6 steps)"}
    for h in results["histograms"].values():
        assert sum(h["real"]) == sum(h["fake"]) == 64
    cross = results["cross_test"]
    assert sum(cross["confusion_a"].values()) == cross["real_samples"] + 100 == 200
    assert "wasserstein_1" in results["quality"] and "Cross-test" in report


def test_diagnose_images_names_the_extractor(tiny_runs, tmp_path):
    from fastreg.diagnostics import DiagnoseOptions, diagnose

    report = diagnose(tiny_runs["digits"], str(tmp_path / "d"), options=DiagnoseOptions(k=2, d_steps=2, record_every=1,
                                                                                         samples=32))
    assert "FID[classifier:digits]" in open(report).read()
    assert "fid/classifier:digits" in json.loads((tmp_path / "d" / "diagnostics.json").read_text())["quality"]


def test_fid_cli_reproduces_the_logged_evaluation(tiny_runs, tmp_path):
    run = tiny_runs["digits"]
    done = run_cli("fid", run, "--samples", "64", "--floor", "--json", str(tmp_path / "fid.json"))
    assert done.returncode == 0, done.stderr
    assert "fastreg fid: 1797 real images of digits embedded with classifier:digits (" in done.stdout  # the time
    results = json.loads((tmp_path / "fid.json").read_text())
    assert results[run]["extractor"] == "classifier:digits" and results[run]["resolution"] == 8
    (logged,) = [r for r in read_metrics(run) if "fid/classifier:digits" in r]  # same seed, latents and G_ema
    assert results[run]["fid/classifier:digits"] == pytest.approx(logged["fid/classifier:digits"], rel=1e-6)
    floor = results["real-data floor: digits"]
    assert floor["samples"] == 898 and 0 < floor["fid/classifier:digits"] < results[run]["fid/classifier:digits"]
    toy = run_cli("fid", tiny_runs["toy"], "--samples", "100", "--floor")  # no features: no floor line
    assert toy.returncode == 0, toy.stderr
    assert "W1 " in toy.stdout and "modes covered" in toy.stdout and "floor" not in toy.stdout
    assert "embedded with" not in toy.stdout
    bad = run_cli("fid", run, "--extractor", "inception")
    assert bad.returncode == 2 and "extractor: 'inception' needs a weights file" in bad.stderr


class UniformBox(nn.Module):
    """Pure noise: Phi(z) * 4 + 6, uniform on the box [6, 10]^2 far from the ring8 data (radius 2)."""

    z_dim = 2

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(()))

    def forward(self, z):
        return torch.special.ndtr(z) * 4 + 6 + 0 * self.unused


def test_cross_test_noise_generator_is_called_fake_by_a_d_trained_against_such_noise(one_thread):
    """Roth's protocol: B's generator outputs uniform noise in a box; A's D, trained to separate the data from
    such noise, calls B's samples real at a rate near 0 (and still calls the data real)."""
    ring = RealSampler(data.get_dataset("ring8", seed=0))
    torch.manual_seed(0)
    D_a = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1))
    train_discriminator(D_a, UniformBox(), ring, 150, torch.Generator().manual_seed(1), lr=1e-2)
    G_a = Offset()
    D_b = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1))
    result = cross_test(G_a, D_a, UniformBox(), D_b, ring(500), samples=2000, seed=3)
    assert result.cross_false_positive_a < 0.05
    assert result.confusion_a.real_called_real > 0.9 * 500


# --- the diagnose subcommands (in process) ---------------------------------------------------------

def _diagnose(*args):
    from fastreg import cli

    return cli.main(["diagnose", *map(str, args)])


def _written(capsys, out, name):
    printed = capsys.readouterr().out.split()
    png, path = out / f"{name}.png", out / f"{name}.json"
    assert png.stat().st_size > 0 and printed == [str(png), str(path)]
    return json.loads(path.read_text())


def test_diagnose_histograms_fixed_g_with_a_variant(tiny_runs, tmp_path, capsys, one_thread):
    out = tmp_path / "h"
    assert _diagnose("histograms", tiny_runs["toy"], "--fixed-g", "--d-steps", 5, "--variant", "lsgan", "--k", 2,
                     "--samples", 64, "--out", out) == 0
    results = _written(capsys, out, "histograms")
    assert results["variant"] == "lsgan" and results["step"] == 4
    assert list(results["histograms"]) == ["run's D", "run's D + 2 lsgan D steps", "fresh D, 5 lsgan steps (G fixed)"]
    for h in results["histograms"].values():
        assert sum(h["real"]) == sum(h["fake"]) == 64 and 0 <= h["overlap"] <= 1
        assert h["overlap"] == pytest.approx(overlap_coefficient(h["real"], h["fake"]))


def test_diagnose_interpolation_and_vanishing_with_noise(tiny_runs, tmp_path, capsys, one_thread):
    assert _diagnose("interpolation", tiny_runs["toy"], "--pairs", 8, "--out", tmp_path) == 0
    profile = _written(capsys, tmp_path, "interpolation")["interpolation"]["run's D"]
    assert len(profile["t"]) == len(profile["mean_logit"]) == len(profile["mean_grad_norm"]) == 41
    assert _diagnose("vanishing", tiny_runs["toy"], "--d-steps", 4, "--record-every", 2, "--noise", 0.5,
                     "--out", tmp_path) == 0
    results = _written(capsys, tmp_path, "vanishing")
    assert results["options"]["noise"] == 0.5
    curves = results["vanishing_gradients"]
    assert list(curves) == ["G at step 4", "G at step 4, noise sigma=0.5"]
    for records in curves.values():
        assert [r["d_step"] for r in records] == [0, 2, 4]
        assert {"minimax_mean", "minimax_std", "nonsat_mean", "nonsat_std", "d_accuracy"} <= set(records[0])
    # the same fresh D at step 0, probed on clean vs noisy fakes
    assert curves["G at step 4"][0]["minimax_mean"] != curves["G at step 4, noise sigma=0.5"][0]["minimax_mean"]


def test_diagnose_cross_test_writes_confusions(tiny_runs, tmp_path, capsys, one_thread):
    assert _diagnose("cross-test", tiny_runs["toy"], tiny_runs["toy-roth"], "--samples", 50, "--out", tmp_path) == 0
    results = _written(capsys, tmp_path, "cross-test")
    cross = results["cross_test"]
    assert (results["run_a"], results["run_b"]) == (tiny_runs["toy"], tiny_runs["toy-roth"])
    assert sum(cross["confusion_a"].values()) == cross["real_samples"] + 50 == 100
    assert 0 <= cross["cross_false_positive_a"] <= 1 and 0 <= cross["cross_false_positive_b"] <= 1


def test_diagnose_bad_input_exits_2_naming_the_argument(tiny_runs, tmp_path, capsys):
    assert _diagnose("cross-test", tiny_runs["toy"], tiny_runs["digits"], "--samples", 10, "--out", tmp_path) == 2
    assert "RUN_B: run" in capsys.readouterr().err
    assert _diagnose("vanishing", tmp_path / "missing") == 2
    assert "RUN_DIR: no run folder" in capsys.readouterr().err
    assert _diagnose("histograms", tiny_runs["toy"], "--variant", "vral", "--out", tmp_path) == 2
    assert "variant: 'vral'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        _diagnose("histogram", tiny_runs["toy"])
    assert exit_info.value.code == 2 and "argument DIAGNOSTIC: invalid choice: 'histogram'" in capsys.readouterr().err


def test_diagnose_run_dir_alone_means_all(tiny_runs):
    from fastreg.cli import build_parser

    args = build_parser().parse_args(["diagnose", tiny_runs["toy"], "--other", tiny_runs["toy-roth"], "--k", "3"])
    assert (args.diagnostic, args.run, args.other, args.k, args.noise) == ("all", tiny_runs["toy"],
                                                                          tiny_runs["toy-roth"], 3, 0.0)
    assert build_parser().parse_args(["diagnose", "all", tiny_runs["toy"]]).diagnostic == "all"


def test_vanishing_plot_band_is_not_clipped_on_the_log_axis(tmp_path, monkeypatch):
    """Issue 16: the band mean - std, clipped at 1e-30, spiked to 1e-28 wherever std >= mean. The band is now
    mean */ exp(std / mean): symmetric on the log axis, never near 0."""
    from fastreg.diagnostics import plots
    from fastreg.diagnostics import GradientRecord

    records = [GradientRecord(t, m, s, 1.0, 0.1, 0.5) for t, m, s in ((0, 1e-2, 1e-3), (25, 1e-4, 2e-4),
                                                                      (50, 1e-6, 3e-6))]
    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, plt, path: figures.append(fig) or path)
    plots.plot_vanishing({"G": records}, str(tmp_path / "v.png"))
    band = figures[0].axes[0].collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() >= 1e-6 * math.exp(-3) * (1 - 1e-9)
    for m, s in ((1e-2, 1e-3), (1e-4, 2e-4)):
        low, high = plots.log_band(m, s)
        assert low * high == pytest.approx(m * m) and high / m == pytest.approx(math.exp(s / m))
    assert figures[0].axes[0].get_ylabel()
