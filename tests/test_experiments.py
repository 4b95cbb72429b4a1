"""The experiment suite: every experiment at the tiny scale (a few steps) into one folder, its reports
and index, the claim rules on hand-made numbers, the re-run commands, and the CLI's errors."""

import json
import math
import os
import re

import pytest
import torch

from fastreg import cli
from fastreg.experiments import CPU, EXPERIMENTS, FULL, QUICK, SCALES, TINY, run_all
from fastreg.experiments.arjovsky import vanishing_claims
from fastreg.experiments.claims import (HELD, INCONCLUSIVE, NOT_HELD, TABLE_HEADER, VERDICTS, Claim, at_least,
                                        better_beyond_spread, fmt, lower)
from fastreg.experiments.roth import (ARCHITECTURES, METHODS, architecture, cross_claims, noise_claims, run_failed,
                                      stability_claims)
from fastreg.experiments.roth_toy import toy_claims
from fastreg.experiments.runs import command, eval_interval, image_config, toy_config
from fastreg.regularizers import REGULARIZER_FIELDS
from fastreg.train.config import ConfigError
from fastreg.experiments.tempered import tempered_claims
from fastreg.experiments.vral import vral_claims

CLAIMS_PER_EXPERIMENT = {"roth-stability": 3, "roth-stability-grid": 2, "roth-cross-test": 2, "roth-toy": 2,
                         "explicit-noise": 2, "arjovsky-vanishing": 4, "vral": 3, "tempered": 2, "stacked-mnist": 3}
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")


@pytest.fixture(scope="module")
def suite(tmp_path_factory, one_thread):
    out = tmp_path_factory.mktemp("experiments")
    reports, index = run_all(str(out), TINY, "digits")
    return out, reports, index


def claims_rows(text: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index(TABLE_HEADER) + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("| "):
            break
        rows.append(line)
    return rows


def test_every_experiment_declares_its_claims():
    assert set(CLAIMS_PER_EXPERIMENT) == set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_report_structure(suite, name):
    out, reports, _ = suite
    folder = out / name
    text = (folder / "report.md").read_text()
    report = next(r for r in reports if r.name == name)
    # the claims table: header, one row per declared claim, each with a verdict and the seeds used
    rows = claims_rows(text)
    assert len(rows) == CLAIMS_PER_EXPERIMENT[name] == len(report.claims)
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 5
        verdict = cells[4].split(" (")[0].strip("*")
        assert verdict in VERDICTS
        if verdict == INCONCLUSIVE and "regime not reached" in cells[4]:
            assert cells[4].endswith(")")  # the gate's reason in one line next to the verdict
        assert re.fullmatch(r"\d+(, \d+)*", cells[3]), cells[3]
    for i in range(1, len(rows) + 1):
        assert f"{i}. Rule for row {i}:" in text
    # settings and the command that re-runs the experiment
    assert "## Settings" in text and "seeds used:" in text
    assert f"re-run: fastreg experiment {name} --scale tiny --data" in text
    # figures: PNG files next to the report, referenced from it
    images = IMAGE.findall(text)
    assert images, "no figure"
    for image in images:
        path = folder / image
        assert path.suffix == ".png" and path.read_bytes()[:4] == b"\x89PNG", image
    # one row per training run, each with the fastreg train command that re-runs it
    run_rows = [line for line in text.splitlines() if line.endswith("` |") and "`fastreg train " in line]
    assert len(run_rows) == len(report.runs) > 0
    # the raw metrics
    raw = json.loads((folder / "metrics.json").read_text())
    assert raw["experiment"] == name
    assert [c["held"] for c in raw["claims"]] == [c.held for c in report.claims]
    assert len(raw["runs"]) == len(report.runs)
    assert all(r["command"].startswith("fastreg train ") for r in raw["runs"])
    assert raw["settings"]["scale"] == "tiny" and raw["results"]


def test_index_links_every_experiment(suite):
    out, reports, index = suite
    text = open(index).read()
    for name in EXPERIMENTS:
        assert f"]({name}/report.md)" in text
    assert text.count(TABLE_HEADER) == len(EXPERIMENTS)
    total = sum(CLAIMS_PER_EXPERIMENT.values())
    counts = [int(n) for n in re.search(r"Claims: (\d+) held, (\d+) not held, (\d+) inconclusive", text).groups()]
    assert sum(counts) == total
    for image in IMAGE.findall(text):
        assert (out / image).is_file(), image


def test_run_commands_rebuild_each_config(suite):
    _, reports, _ = suite
    for report in reports:
        for run in report.runs:
            args = cli.build_parser().parse_args(command(run.config).split()[1:])
            assert cli.config_from_args(args) == run.config, run.name


def test_every_scale_config_is_valid(tmp_path):
    """Every configuration the quick, cpu and full scales would train is accepted (nothing is trained)."""
    for scale in (QUICK, CPU, FULL):
        for arch in scale.architectures:
            for method in scale.methods:
                config = image_config(scale, "digits", str(tmp_path), 0, **architecture(arch, method, scale.width))
                assert config.steps == scale.image_steps and config.eval_every <= config.steps
                # the architecture decides D's normalization; only WGAN-GP's critic swaps batch norm for layer norm
                want = ARCHITECTURES[arch][1](scale.width)["d_norm"]
                if config.variant == "wgan-gp" and want == "batch":
                    want = "layer"
                assert config.resolved("d_norm") == want
        toy_config(scale, str(tmp_path), 0)
        image_config(scale, "digits", str(tmp_path), 0, steps=scale.tempered_steps, variant="wgan-gp", lens=True,
                     lens_width=scale.lens_width, lens_k=scale.lens_schedule())
        assert set(scale.methods) <= set(METHODS) and {"ns", "roth-annealed", "roth-0.1"} <= set(scale.methods)
    assert QUICK.seeds == CPU.seeds == FULL.seeds == (0, 1, 2)  # the multi-seed experiments use 3 seeds
    assert list(SCALES) == ["tiny", "quick", "cpu", "full"]


def test_the_cli_offers_every_scale_of_the_table():
    for name in SCALES:
        args = cli.build_parser().parse_args(["experiment", "all", "--scale", name])
        assert args.scale == name


def test_scales_follow_the_papers_budgets():
    """The settings each module cites: Arjovsky & Bottou's fresh D trains 4,000 steps (full and cpu) with >= 10
    probe batches for the variance; Grewal et al.'s fixed G is LSGAN-trained 5 epochs; Roth's toy script runs
    100k steps; the lens reaches the identity well inside the run."""
    for scale in (CPU, FULL):
        assert scale.fresh_d_steps == 4000 and scale.probe_batches >= 10 and scale.epochs == (1, 10, 25)
        assert scale.fixed_g_epochs == 5 and scale.critic_ratio == 50
        assert scale.lens_schedule() <= scale.tempered_steps / 2
    assert FULL.toy_steps == 100_000 and CPU.toy_steps >= 12_000 and CPU.cross_steps >= 3000
    assert QUICK.lens_schedule() <= QUICK.tempered_steps / 2


def test_toy_config_is_the_authors_script(tmp_path):
    """Roth et al.'s 3-D toy script: z of dimension 2, the minimax G loss, truncated-normal(0.1) init, Adam 1e-3,
    batch 512, the raw generator scored (no EMA)."""
    from fastreg.train import build

    config = toy_config(CPU, str(tmp_path), 0)
    assert (config.z_dim, config.variant, config.mlp_init, config.ema) == (2, "gan", "truncated-normal", 0.0)
    assert (config.batch_size, config.lr_d, config.lr_g, config.model) == (512, 1e-3, 1e-3, "mlp")
    torch.manual_seed(0)
    G, D = build.networks(config, (3,))
    for net in (G, D):
        for layer in net.modules():
            if isinstance(layer, torch.nn.Linear):
                w = layer.weight.detach()
                assert w.abs().max() <= 0.2 and (layer.bias == 0).all()
                if w.numel() > 1000:
                    assert 0.07 < w.std().item() < 0.1   # N(0, 0.1^2) truncated at 2 std: std 0.088
    with pytest.raises(ConfigError, match="mlp_init"):
        image_config(TINY, "digits", str(tmp_path), 0, mlp_init="truncated-normal")


def test_evaluations_are_spread_without_a_near_duplicate():
    """250 steps, 4 points: 63, 126, 189 and the final 250 (steps // 4 = 62 also evaluated at 248)."""
    assert eval_interval(250, 4) == 63 and eval_interval(1000, 4) == 250 and eval_interval(3, 1) == 3
    for steps, points in ((250, 4), (600, 4), (3000, 4), (12_000, 4), (7, 3)):
        every = eval_interval(steps, points)
        scheduled = [t for t in range(every, steps + 1, every)]
        if scheduled[-1] != steps:
            assert steps - scheduled[-1] >= every / 4, (steps, points)
        assert len(set(scheduled) | {steps}) <= points


def test_a_run_without_an_fid_is_not_called_diverged():
    assert fmt(math.nan) == "-" and fmt(None) == "-" and fmt(math.inf) == "diverged" and fmt(1.23456) == "1.235"


def test_toy_scatter_is_not_clamped(tmp_path):
    """Five of the seven modes of the 3-D mixture lie beyond 1: the scatter shows them where they are."""
    from fastreg.experiments import figures

    captured = {}
    from matplotlib.axes import Axes
    original = Axes.scatter

    def scatter(self, x, y, *args, **kwargs):
        captured["x"], captured["y"] = x, y
        return original(self, x, y, *args, **kwargs)

    Axes.scatter = scatter
    try:
        figures.sample_panels({"toy": torch.tensor([[1.7, -1.4, 0.0], [0.2, 0.3, 0.0]])}, str(tmp_path / "s.png"))
    finally:
        Axes.scatter = original
    assert list(captured["x"]) == pytest.approx([1.7, 0.2]) and list(captured["y"]) == pytest.approx([-1.4, 0.3])


def test_d_accuracy_uses_each_losses_threshold():
    """LSGAN's D aims at b = 1 on real and a = 0 on fake, VRAL's at mu_r and mu_f: v > 0 would call every LSGAN
    output in (0, 1) real. A critic (WGAN) has no threshold of its own: the midpoint of the two means."""
    from fastreg.diagnostics.discriminator import decision_threshold, output_histograms

    assert decision_threshold("ns") == decision_threshold("gan") == 0.0
    assert decision_threshold("lsgan") == 0.5 and decision_threshold("vral", 1.0, -1.0) == 0.0
    assert decision_threshold("wgan") is None and decision_threshold("wgan-gp") is None
    v_real, v_fake = torch.tensor([0.9, 0.8, 0.3]), torch.tensor([0.1, 0.2, 0.6])
    assert output_histograms(v_real, v_fake)["accuracy"] == pytest.approx(3 / 6)   # v > 0: fakes called real
    assert output_histograms(v_real, v_fake, threshold=0.5)["accuracy"] == pytest.approx(4 / 6)
    h = output_histograms(v_real + 10, v_fake + 10, threshold=None)   # midpoint of the means, 10.4833
    assert h["threshold"] == pytest.approx(10 + (2.0 / 3 + 0.3) / 2) and h["accuracy"] == pytest.approx(4 / 6)


def test_relative_variance_of_the_gradient_is_trace_of_covariance_over_squared_mean():
    from fastreg.diagnostics.vanishing import relative_variance

    g = torch.tensor([[1.0, 0.0], [3.0, 2.0], [2.0, 1.0]], dtype=torch.float64)   # mean (2, 1), var (1, 1)
    assert relative_variance(g) == pytest.approx(2.0 / 5.0)
    assert math.isnan(relative_variance(g[:1]))


def test_arjovsky_noise_probe_uses_the_seeded_noise(tmp_path, monkeypatch, one_thread):
    """The 'with noise' fresh D gets its noise from vanishing_gradients (a generator re-seeded per record), not
    from a wrapper drawing on the global RNG, so that every record sees the same noise."""
    from fastreg.diagnostics.vanishing import GradientRecord
    from fastreg.experiments import arjovsky

    calls = []

    def fake(G, D, real, d_steps, every, **kwargs):
        calls.append((type(D).__name__, kwargs))
        return [GradientRecord(0, 1.0, 0.1, 1.0, 0.1, 1.0, 0.5), GradientRecord(d_steps, 0.01, 0.1, 1.0, 0.1, 1.0,
                                                                                  0.9)], D

    monkeypatch.setattr(arjovsky, "vanishing_gradients", fake)
    arjovsky.vanishing(str(tmp_path), TINY, "digits")
    noisy = [kw for name, kw in calls if kw.get("noise", 0) > 0]
    assert len(noisy) == len(calls) // 2 == len(TINY.epochs)
    assert all(kw["noise"] == arjovsky.NOISE_SIGMA and kw["batches"] == TINY.probe_batches for kw in noisy)
    assert {name for name, _ in calls} == {"DCGANDiscriminator"}   # the same D class, no noise wrapper


# --- the claim rules on hand-made numbers -----------------------------------------------------------

def test_rule_primitives():
    assert at_least([True, True, False], 2) == HELD
    assert at_least([True, False, False], 2) == NOT_HELD
    assert at_least([True, None, False], 2) == INCONCLUSIVE
    assert lower(1.0, 2.0) and not lower(2.0, 1.0)
    assert lower(5.0, math.inf) is True and lower(math.inf, 5.0) is False
    assert lower(math.inf, math.nan) is None
    with pytest.raises(ValueError, match="held"):
        Claim("c", "p", "m", [0], "maybe", "r")


def test_stability_architectures():
    assert architecture("dcgan", "ns", 16) == {"model": "dcgan", "width": 16, "d_norm": "batch"}
    assert architecture("dcgan", "roth-annealed", 16)["d_norm"] == "batch"   # the same D as unregularized
    assert architecture("dcgan-nobn", "roth-annealed", 16)["d_norm"] == "none"
    assert architecture("dcgan", "noise", 16)["d_norm"] == "batch"
    assert architecture("dcgan-narrow", "wgan-gp", 16) == {"model": "dcgan", "width": 8, "d_norm": "layer",
                                                          "variant": "wgan-gp"}


LIKE_FOR_LIKE = set(REGULARIZER_FIELDS) | {"noise", "noise_schedule", "out"}  # what a compared run may change


def differing_fields(a, b) -> set:
    a, b = a.with_resolved_architecture(), b.with_resolved_architecture()
    return {f for f in vars(a) if getattr(a, f) != getattr(b, f)}


def test_compared_runs_differ_only_in_the_regularizer(suite):
    """Regularized vs unregularized (and vs instance noise) runs train the same D and G with the same data,
    budget and seed: only the regularizer's (or the noise's) fields differ."""
    _, reports, _ = suite
    by_name = {r.name: r for r in reports}
    stability = by_name["roth-stability"].runs
    for arch in {run.name.split(" / ")[0] for run in stability}:
        group = {run.name.split(" / ")[1]: run.config for run in stability if run.name.startswith(f"{arch} / ")}
        for method in ("roth-annealed", "roth-0.1", "noise"):
            assert differing_fields(group["ns"], group[method]) <= LIKE_FOR_LIKE, (arch, method)
        assert group["roth-annealed"].d_forward in ("joint", "separate")  # resolved from D, recorded in the report
    for name in ("roth-cross-test", "explicit-noise", "roth-toy"):
        runs = by_name[name].runs
        first = runs[0].config
        for run in runs[1:]:
            if run.config.seed == first.seed:
                assert differing_fields(first, run.config) <= LIKE_FOR_LIKE, (name, run.name)


ARCHS3 = ("dcgan", "dcgan-nobn", "resnet")
FAILED = {"dcgan": True, "dcgan-nobn": False, "resnet": False}


def test_better_beyond_spread():
    assert better_beyond_spread([10.0, 11.0, 12.0], [20.0, 21.0, 22.0]) is True      # 11 < 21 - 1
    assert better_beyond_spread([10.0, 20.0, 30.0], [25.0, 26.0, 27.0]) is False     # 20 < 26 - 10 fails
    assert better_beyond_spread([10.0, 11.0, 12.0], [20.0, math.inf, 22.0]) is True  # a diverged seed loses
    assert better_beyond_spread([10.0, 11.0], [20.0, 21.0]) is None                  # fewer than 3 seeds


def test_stability_rule():
    good = {a: {"ns": [40.0, 42.0, 44.0], "roth-annealed": [20.0, 21.0, 22.0], "roth-0.1": [25.0, 26.0, 27.0]}
            for a in ARCHS3}
    good["resnet"]["ns"] = [math.inf, 40.0, 41.0]   # an unregularized run diverged
    assert [c.held for c in stability_claims(good, FAILED, [0, 1, 2])] == [HELD, HELD, HELD]
    bad = {a: {"ns": [20.0, 21.0, 22.0], "roth-annealed": [30.0, 31.0, 32.0], "roth-0.1": [19.0, 21.0, 23.0]}
           for a in ARCHS3}
    assert [c.held for c in stability_claims(bad, FAILED, [0, 1, 2])] == [NOT_HELD, NOT_HELD, NOT_HELD]
    # a 1-FID lead inside a 10-FID spread between seeds is no evidence
    noisy = {a: {"ns": [30.0, 40.0, 50.0], "roth-annealed": [29.0, 39.0, 49.0], "roth-0.1": [29.0, 39.0, 49.0]}
             for a in ARCHS3}
    assert [c.held for c in stability_claims(noisy, FAILED, [0, 1, 2])] == [NOT_HELD, NOT_HELD, NOT_HELD]


def test_stability_gate_needs_a_failing_unregularized_gan():
    good = {a: {"ns": [40.0, 42.0, 44.0], "roth-annealed": [20.0, 21.0, 22.0], "roth-0.1": [25.0, 26.0, 27.0]}
            for a in ARCHS3}
    claims = stability_claims(good, {a: False for a in ARCHS3}, [0, 1, 2])
    assert [c.held for c in claims] == [INCONCLUSIVE] * 3
    assert all("did not fail" in c.reason and "full" in c.reason for c in claims)
    assert run_failed(math.inf, [50.0]) and run_failed(80.0, [50.0, 40.0, 80.0]) and not run_failed(45.0, [50, 40, 45])


def test_cross_test_rule():
    assert [c.held for c in cross_claims(0.0, 1.0, 0)] == [HELD, HELD]
    assert [c.held for c in cross_claims(0.3, 0.6, 0)] == [HELD, NOT_HELD]
    assert [c.held for c in cross_claims(0.7, 0.2, 0)] == [NOT_HELD, NOT_HELD]


def test_cross_test_gate_needs_each_d_to_reject_its_own_fakes():
    # 300 steps: each D called 34-38% of its own fakes real, so cross rates only echo that
    claims = cross_claims(0.30, 0.36, 0, own_reg=0.34, own_unreg=0.38)
    assert [c.held for c in claims] == [INCONCLUSIVE, INCONCLUSIVE] and "own G's samples" in claims[0].reason
    # a D that calls everything fake rejects its own fakes trivially: it must also accept the real samples
    claims = cross_claims(0.0, 0.1, 0, own_reg=0.0, own_unreg=0.0, real_rate=0.05)
    assert [c.held for c in claims] == [INCONCLUSIVE, INCONCLUSIVE] and "real samples" in claims[0].reason
    assert cross_claims(0.0, 0.058, 0, own_reg=0.05, own_unreg=0.1, real_rate=0.95)[0].held == HELD


def toy_result(modes: int, w1: float) -> dict:
    return {"modes_covered": modes, "n_modes": 7, "high_quality": 0.5, "wasserstein_1": w1}


def test_toy_rule():
    reg = {s: toy_result(7, 0.1) for s in (0, 1, 2)}
    unreg = {0: toy_result(5, 0.5), 1: toy_result(6, 0.4), 2: toy_result(7, 0.3)}   # the 12k-step numbers
    assert [c.held for c in toy_claims(reg, unreg)] == [HELD, HELD]
    assert [c.held for c in toy_claims(unreg, reg)] == [NOT_HELD, NOT_HELD]
    fewer = {**reg, 1: toy_result(5, 0.1)}
    assert toy_claims(fewer, unreg)[0].held == NOT_HELD   # on seed 1 fewer modes than without


def test_toy_gate_needs_a_trained_baseline():
    nothing = {s: toy_result(0, 0.5) for s in (0, 1, 2)}   # the old demo: 0/7 modes on both sides
    claims = toy_claims({s: toy_result(7, 0.1) for s in (0, 1, 2)}, nothing)
    assert [c.held for c in claims] == [INCONCLUSIVE, INCONCLUSIVE] and "covers no mode" in claims[0].reason


def test_toy_gate_names_every_seed_that_did_not_leave_its_start():
    # the thread-dependent demo: on seed 1 the unregularized run stayed at 0 modes, the others trained
    reg = {s: toy_result(7, 0.1) for s in (0, 1, 2)}
    unreg = {0: toy_result(7, 0.2), 1: toy_result(0, 2.0), 2: toy_result(7, 0.2)}
    claims = toy_claims(reg, unreg)
    assert [c.held for c in claims] == [INCONCLUSIVE, INCONCLUSIVE]
    assert "unregularized seed 1 covers no mode" in claims[0].reason and "seed 0" not in claims[0].reason
    stuck_reg = {**reg, 2: toy_result(0, 2.0)}
    reason = toy_claims(stuck_reg, {s: toy_result(7, 0.2) for s in (0, 1, 2)})[1].reason
    assert reason.startswith("regime not reached: regularized seed 2 covers no mode")


def test_noise_rule():
    roth, none = [10.0, 11.0, 12.0], [30.0, 31.0, 32.0]
    assert [c.held for c in noise_claims(roth, none, {0.1: [20.0, 21.0, 22.0], 1.0: [50.0, 51.0, 52.0]},
                                         [0, 1, 2])] == [HELD, HELD]
    assert [c.held for c in noise_claims([25.0, 26.0, 27.0], none, {0.1: [20.0, 21.0, 22.0]}, [0, 1, 2])] == \
        [NOT_HELD, HELD]
    # the quick suite's kind of verdict: a 1.9-FID lead inside a 15-FID spread
    spread = noise_claims([100.0, 115.0, 130.0], [102.0, 117.0, 131.9], {0.1: [101.0, 116.0, 131.0]}, [0, 1, 2])
    assert [c.held for c in spread] == [NOT_HELD, NOT_HELD]


def test_noise_gate_needs_a_trained_baseline():
    claims = noise_claims([10.0, 11.0, 12.0], [30.0, 31.0, 32.0], {0.1: [20.0, 21.0, 22.0]}, [0, 1, 2],
                          baseline_trained=False)
    assert [c.held for c in claims] == [INCONCLUSIVE, INCONCLUSIVE] and "baseline" in claims[0].reason


def vanishing_stage(minimax, nonsat, relvar_start, relvar_end, accuracy=0.99) -> dict:
    return {"minimax": minimax, "nonsat": nonsat, "relvar_start": relvar_start, "relvar_end": relvar_end,
            "d_accuracy": accuracy}


def test_vanishing_rule():
    plain = {f"{e} epochs": vanishing_stage(1e-3, 0.8, 0.1, 0.5) for e in (1, 10, 25)}
    noisy = {k: {**v, "minimax": 0.5} for k, v in plain.items()}
    assert [c.held for c in vanishing_claims(plain, noisy, 0)] == [HELD] * 4
    flat = {k: vanishing_stage(0.9, 0.5, 0.5, 0.1) for k in plain}
    assert [c.held for c in vanishing_claims(flat, flat, 0)] == [NOT_HELD] * 4


def test_vanishing_gate_needs_a_nearly_optimal_fresh_d():
    weak = {f"{e} epochs": vanishing_stage(1e-3, 0.8, 0.1, 0.5, accuracy=0.6) for e in (1, 10, 25)}
    claims = vanishing_claims(weak, weak, 0)
    assert [c.held for c in claims] == [INCONCLUSIVE] * 4 and "accuracy" in claims[0].reason
    # a stage whose fresh D did not get there is left out of the verdict (and named)
    mixed = {**{f"{e} epochs": vanishing_stage(1e-3, 0.8, 0.1, 0.5) for e in (1, 10)},
             "25 epochs": vanishing_stage(0.9, 0.5, 0.5, 0.1, accuracy=0.6)}
    claims = vanishing_claims(mixed, mixed, 0)
    assert claims[0].held == HELD and "left out" in claims[0].measured and "25 epochs" in claims[0].measured


def test_vral_rule():
    fid = {"gan": math.inf, "ns": 80.0, "vral": 30.0}
    overlap = {"gan": 0.0, "ns": 0.1, "vral": 0.6}
    assert [c.held for c in vral_claims(fid, overlap, overlap, 0)] == [HELD, HELD, HELD]
    assert [c.held for c in vral_claims({**fid, "ns": 20.0}, {**overlap, "gan": 0.9}, overlap, 0)] == \
        [NOT_HELD, NOT_HELD, HELD]


def test_vral_gates_need_a_trained_g():
    fid = {"gan": math.inf, "ns": 80.0, "vral": 30.0}
    overlap = {"gan": 0.0, "ns": 0.1, "vral": 0.6}
    assert [c.held for c in vral_claims(fid, overlap, overlap, 0, ratio_trained=False)] == \
        [INCONCLUSIVE, INCONCLUSIVE, HELD]
    claims = vral_claims(fid, overlap, overlap, 0, fixed_trained=False)
    assert [c.held for c in claims] == [HELD, HELD, INCONCLUSIVE] and "fixed G" in claims[2].reason


def test_tempered_rule():
    fid = {v: {"plain": [40.0, 60.0, 50.0], "lens": [20.0, 22.0, 24.0]} for v in ("ns", "lsgan", "wgan-gp")}
    assert [c.held for c in tempered_claims(fid, [0, 1, 2], 0.25)] == [HELD, HELD]
    worse = {v: {"plain": r["lens"], "lens": r["plain"]} for v, r in fid.items()}
    assert [c.held for c in tempered_claims(worse, [0, 1, 2], 0.25)] == [NOT_HELD, NOT_HELD]
    # better on two seeds of three is not better on every seed
    split = {v: {"plain": [6.4, 6.4, 6.4], "lens": [6.0, 6.1, 6.9]} for v in fid}
    assert tempered_claims(split, [0, 1, 2], 0.25)[0].held == NOT_HELD
    one_seed = {v: {"plain": [40.0], "lens": [20.0]} for v in fid}
    assert [c.held for c in tempered_claims(one_seed, [0], 0.25)] == [INCONCLUSIVE, INCONCLUSIVE]


def test_tempered_gate_needs_the_lens_back_at_identity_early():
    fid = {v: {"plain": [40.0, 60.0, 50.0], "lens": [20.0, 22.0, 24.0]} for v in ("ns", "lsgan", "wgan-gp")}
    claims = tempered_claims(fid, [0, 1, 2], 1.0)   # K = the run's length: identity only at the last step
    assert [c.held for c in claims] == [INCONCLUSIVE, INCONCLUSIVE] and "identity" in claims[0].reason


def test_suite_configs_follow_the_cited_protocols(suite):
    """The runs each experiment trained carry the settings its module cites."""
    _, reports, _ = suite
    by_name = {r.name: r for r in reports}
    cross = {run.name: run.config for run in by_name["roth-cross-test"].runs}
    assert (cross["regularized"].reg, cross["regularized"].gamma, cross["regularized"].gamma_anneal) == \
        ("roth", 0.1, None)
    assert cross["unregularized"].resolved("d_norm") == cross["regularized"].resolved("d_norm") == "batch"
    for run in by_name["roth-toy"].runs:
        assert (run.config.z_dim, run.config.variant, run.config.mlp_init, run.config.ema) == \
            (2, "gan", "truncated-normal", 0.0)
    vral_runs = by_name["vral"].runs
    assert vral_runs[0].config.variant == "lsgan"     # the fixed G, trained first
    for run in vral_runs:
        c = run.config
        assert c.resolved("d_norm") == "batch" and (c.resolved("optimizer"), c.resolved("lr_d")) == ("adam", 2e-4)
        if "fixed G" in run.name and run is not vral_runs[0]:
            assert c.lr_g == 0.0 and c.n_critic == 1
    tempered = by_name["tempered"].runs
    assert {run.config.variant for run in tempered} == {"ns", "lsgan", "wgan-gp"}
    for run in tempered:
        if run.config.lens:
            assert run.config.lens_k <= run.config.steps / 2
    seeds = {run.config.seed for run in by_name["roth-stability"].runs}
    assert seeds == set(TINY.seeds) and {run.config.seed for run in by_name["explicit-noise"].runs} == seeds


# --- the CLI -------------------------------------------------------------------------------------------

def test_unknown_experiment_exits_non_zero_naming_it(capsys, tmp_path):
    assert cli.main(["experiment", "roth-stabilty", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "roth-stabilty" in err and "roth-stability" in err
    assert not os.listdir(tmp_path)


def test_unknown_dataset_exits_non_zero_naming_it(capsys, tmp_path):
    assert cli.main(["experiment", "vral", "--scale", "tiny", "--data", "nodata", "--out", str(tmp_path)]) == 2
    assert "nodata" in capsys.readouterr().err


def test_cli_runs_one_experiment(capsys, tmp_path, one_thread):
    assert cli.main(["experiment", "roth-cross-test", "--scale", "tiny", "--seeds", "3", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "roth-cross-test:" in printed and "report written to" in printed
    raw = json.loads((tmp_path / "roth-cross-test" / "metrics.json").read_text())
    assert raw["settings"]["seeds used"] == [3] and all(r["seed"] == 3 for r in raw["runs"])


def test_lens_width_sets_the_lens_channels(tmp_path, one_thread):
    """The tempered experiment's narrower lens (config field lens_width) reaches the trainer's lens."""
    from fastreg.train.config import ConfigError
    from fastreg.train.trainer import Trainer

    config = image_config(TINY, "digits", str(tmp_path), 0, lens=True, lens_width=4)
    lens = Trainer(config).lens
    assert lens.inp.out_channels == 4 and lens.blocks[0].conv1.in_channels == 4
    with pytest.raises(ConfigError, match="lens_width"):
        image_config(TINY, "digits", str(tmp_path), 0, lens=True, lens_width=0)


def test_readme_section_names_every_experiment_and_its_commands_parse():
    """README.md's experiments section: a row per experiment, and every `fastreg experiment` command it
    shows is accepted by the CLI's parser with a known name."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    heading = "## Reproduce the papers' claims"
    assert heading in readme
    text = readme.split(heading, 1)[1].split("\n## ", 1)[0]
    for name in EXPERIMENTS:
        assert f"| `{name}` |" in text, name
    commands = re.findall(r"^(fastreg experiment [^#\n]*)", text, re.M)
    assert len(commands) >= 3
    for line in commands:
        args = cli.build_parser().parse_args(line.split()[1:])
        assert args.name == "all" or args.name in EXPERIMENTS, line
