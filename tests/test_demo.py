"""The demo's code path at a smoke-test budget: the flagship comparison as an experiment of fastreg.experiments
(its scale, runs, claim rules and report), four runs per dataset and a report that shows them side by side."""

import json
import re

import pytest

from fastreg.cli import main
from dataclasses import replace

from fastreg.experiments.demo import (DEMO, DEMO_CELL, MARKER, QUICK, DemoOutputError, demo_configs, image_claims,
                                      run_demo)
from fastreg.experiments import Scale
from fastreg.experiments.stability_grid import Cell, cell_config, declared_cells
from fastreg.experiments.claims import HELD, INCONCLUSIVE, NOT_HELD, TABLE_HEADER
from fastreg.experiments.runs import toy_config
from fastreg.regularizers import REGULARIZER_FIELDS, REGULARIZERS


def test_demo_pairs_differ_only_in_the_regularizer(tmp_path):
    annealed, constant = REGULARIZERS["roth"].preset(annealed=True), REGULARIZERS["roth"].preset()
    for scale in (QUICK, DEMO):
        assert isinstance(scale, Scale)   # the demo's budget is an experiment scale
        configs = demo_configs(str(tmp_path), scale)
        # each run named by the variant it trains: ns on digits, the minimax gan of the authors' toy script
        assert set(configs) == {f"{d}-{v}{m}-seed{s}" for d, v in (("mnist5k", "ns"), ("toy3d", "gan"))
                                for m in ("", "-roth") for s in scale.seeds}
        for dataset, preset, variant in (("mnist5k", annealed, "ns"), ("toy3d", constant, "gan")):
            for seed in scale.seeds:
                plain, roth = (configs[f"{dataset}-{m}-seed{seed}"].with_resolved_architecture()
                               for m in (variant, f"{variant}-roth"))
                assert plain.variant == roth.variant == variant
                differing = {k for k in vars(plain) if getattr(plain, k) != getattr(roth, k)}
                assert differing <= {*REGULARIZER_FIELDS, "out"} and "reg" in differing
                assert {k: getattr(roth, k) for k in preset} == preset and plain.seed == seed
                if dataset == "mnist5k":  # Radford et al.'s D with batch norm on both sides, as Roth et al.'s code
                    assert plain.d_norm == roth.d_norm == "batch" and plain.variant == "ns"


def test_the_toy_pair_is_the_roth_toy_protocol(tmp_path):
    """The same toy protocol as the roth-toy experiment (the authors' script), only the step count is the demo's."""
    configs = demo_configs(str(tmp_path), DEMO)
    for method, extra in (("gan", {}), ("gan-roth", REGULARIZERS["roth"].preset())):
        mine = configs[f"toy3d-{method}-seed0"]
        assert mine == toy_config(DEMO, mine.out, 0, "misspecified3d", **extra)
        assert (mine.z_dim, mine.variant, mine.mlp_init, mine.ema) == (2, "gan", "truncated-normal", 0.0)


def test_default_demo_budget():
    """Three seeds per side; the image pair is the stability grid's rescued cell at its cpu scale (the DCGAN with
    batch norm in D, Adam 1e-3 / beta1 0.9, 5:1, 600 steps on mnist-5k:train at 16x16); the toy long enough for
    the roth-toy regime (the former 2,000 toy steps covered 0 of 7 modes on both sides)."""
    assert DEMO.seeds == (0, 1, 2) and DEMO.grid_steps == 600 and DEMO.resolution == 16 and DEMO.width == 16
    assert DEMO_CELL == Cell("dcgan", "1e-3/0.9", 5) and DEMO_CELL in declared_cells()
    assert 5000 <= DEMO.toy_steps <= 12_000


def test_the_image_pair_is_the_grid_cells_runs(tmp_path):
    """Each image run is the stability grid's run of that cell, method and seed, only in the demo's folder."""
    configs = demo_configs(str(tmp_path), DEMO)
    for name, grid_method in (("ns", "ns"), ("ns-roth", "roth-annealed")):
        for seed in DEMO.seeds:
            mine = configs[f"mnist5k-{name}-seed{seed}"]
            grid = cell_config(DEMO, DEMO_CELL, grid_method, seed, str(tmp_path))
            assert mine == replace(grid, out=mine.out) and mine.out == str(tmp_path / f"mnist5k-{name}-seed{seed}")
            assert (mine.data, mine.lr_d, mine.lr_g, mine.betas, mine.n_critic, mine.steps) == (
                "mnist-5k:train", 1e-3, 1e-3, (0.9, 0.999), 5, 600)
            assert mine.eval_extractor == "classifier:mnist-5k" and mine.eval_samples == 1000


def image_run(fid: float, covered: int = 10, curve=(300.0,), diverged=None):
    class Run:
        def __init__(self):
            self.points = [(i, v) for i, v in enumerate([*curve, fid])]

        def curve(self, key):
            return self.points

    return {"final_eval": {"fid/classifier:mnist-5k": fid}, "run": Run(), "diverged": diverged, "final_fid": fid,
            "covered": covered}


def test_image_rules_are_the_grid_failure_rule_and_a_margin():
    tau = 30.0
    failing = {s: image_run(f) for s, f in enumerate((60.0, 70.0, 80.0))}     # above the threshold
    rescued = {s: image_run(f) for s, f in enumerate((10.0, 11.0, 12.0))}
    rescue, fid = image_claims(failing, rescued, tau)
    assert rescue.held == HELD and fid.held == HELD
    assert "failed seeds with Roth 0/3 vs without 3/3" in rescue.measured and "FID 60 > 30" in rescue.measured
    # two regularized failures (a collapse, a non-finite run) of three: not a third of the unregularized rate
    poor = {0: image_run(10.0), 1: image_run(12.0, covered=5), 2: image_run(float("inf"), diverged="non-finite d")}
    assert image_claims(failing, poor, tau)[0].held == NOT_HELD
    assert "collapsed (5 of 10 classes)" in image_claims(failing, poor, tau)[0].measured
    one = {0: image_run(10.0), 1: image_run(11.0, covered=5), 2: image_run(12.0)}  # 1 of 3 vs 3 of 3: a third
    assert image_claims(failing, one, tau)[0].held == HELD
    # nothing to rescue: no unregularized failure
    claim = image_claims(rescued, rescued, tau)[0]
    assert claim.held == INCONCLUSIVE and "regime not reached" in claim.reason
    close = {s: image_run(f) for s, f in enumerate((19.0, 21.0, 23.5))}
    plain = {s: image_run(f) for s, f in enumerate((20.0, 22.0, 24.0))}
    assert image_claims(plain, close, tau)[1].held == NOT_HELD   # lower on every seed, but inside the spread
    untrained = {s: image_run(f, curve=(10.0,)) for s, f in enumerate((20.0, 22.0, 24.0))}
    claim = image_claims(untrained, rescued, tau)[1]
    assert claim.held == INCONCLUSIVE and "did not fall" in claim.reason


def test_quick_demo_writes_a_report_that_reads_itself(tmp_path):
    report = run_demo(str(tmp_path / "demo"), QUICK, threads=1)
    text = open(report).read()
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (tmp_path / "demo" / image).exists(), image
    # the experiments' report: settings, the claims table with a rule per row, a run table with commands
    assert TABLE_HEADER in text and "1. Rule for row 1:" in text and "4. Rule for row 4:" in text
    assert "re-run: fastreg demo --quick --out " in text
    assert len(re.findall(r"^\| .* \| `fastreg train .*` \|$", text, re.M)) == 8
    raw = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert raw["experiment"] == "demo" and len(raw["claims"]) == 4 and len(raw["runs"]) == 8
    assert "| D normalization | batch | batch |" in text and "| model (G and D) | dcgan | dcgan |" in text
    assert "| channel width | 8 | 8 |" in text and "| data | mnist-5k:train, 8x8 | mnist-5k:train, 8x8 |" in text
    assert "betas (0.9, 0.999), 5 D step(s) per G step" in text and "| failure rule |" in text
    assert "failure threshold FID:" in text and "The failure rule's threshold, from the data alone" in text
    assert "| seeds | 0, 1 | 0, 1 |" in text and "| generator steps | 4 | 4 |" in text
    assert text.count("The two sides differ in: regularizer.") == 2
    for name in ("mnist5k-ns-seed0", "mnist5k-ns-roth-seed1", "toy3d-gan-seed0", "toy3d-gan-roth-seed1"):
        assert f"| {name} |" in text
    assert re.search(r"\| \*\*ns-roth, mean ± std\*\* \| 2 seeds \|", text)
    assert re.search(r"\| \*\*gan-roth, mean ± std\*\* \| 2 seeds \|", text)
    assert "| variant (D and G losses) | gan | gan |" in text and "| variant (D and G losses) | ns | ns |" in text
    # every seed in every figure: both seeds' digits samples and toy panels; the W1 estimate's own spread
    for name in ("mnist5k-ns-seed0", "mnist5k-ns-seed1", "mnist5k-ns-roth-seed0", "mnist5k-ns-roth-seed1"):
        assert f"]({name}/samples/step_000004.png)" in text
    assert "Final samples of every toy run (rows: methods, columns: seeds)" in text
    assert "W1 spread over draws (std)" in text and "averaged over 2 independent draws" in text
    for name, result in raw["results"].items():
        if name.startswith("mnist5k-"):  # the failure rule's inputs and verdict, per run
            assert 0 <= result["covered"] <= 10 and sum(result["class_counts"]) == 100 and "failure" in result
        if "quality" in result:
            q = result["quality"]
            assert q["repeats"] == 2 and q["w1_samples"] == 100 and q["wasserstein_1_std"] >= 0
            assert q["modes_min"] <= q["modes_max"] and q["wasserstein_1_floor"] > 0
    assert "intra-op thread(s) each" in text and "load average" in text
    # words, not keys: definitions, scale, which generator, the toy's plane picture
    assert "D gradient norm: the L2 norm of the gradient of D's loss" in text
    assert "real-data floor" in text and "KID is the unbiased polynomial-kernel MMD^2" in text
    assert "from the EMA generator" in text and "toy3d_plane.png" in text
    assert "projected onto the mixture's plane" in text
    assert_tables_are_well_formed(text)
    (tmp_path / "demo" / "notes.txt").write_text("mine")  # a file the demo did not write
    (tmp_path / "demo" / "report.md").write_text("stale")
    # re-runnable over its own output, which it replaces; here with --jobs 2: two worker processes of one thread
    # each, whose every number equals the sequential run's
    run_demo(str(tmp_path / "demo"), QUICK, jobs=2, threads=1)
    assert (tmp_path / "demo" / "notes.txt").read_text() == "mine"
    assert (tmp_path / "demo" / "report.md").read_text() != "stale"
    parallel = json.loads((tmp_path / "demo" / "metrics.json").read_text())["results"]
    assert sorted(parallel) == sorted(raw["results"]) and len(parallel) == 8
    for name, result in raw["results"].items():
        mine = parallel[name]
        assert {**mine["final_eval"], "eval_seconds": 0} == {**result["final_eval"], "eval_seconds": 0}, name
        assert mine.get("quality") == result.get("quality"), name


def test_demo_refuses_jobs_below_one(capsys):
    assert main(["demo", "--quick", "--jobs", "0"]) == 2
    assert "fastreg demo: --jobs: must be at least 1, got 0" in capsys.readouterr().err


def test_curve_plots_have_titles_and_axis_labels_in_words(tmp_path):
    from fastreg.diagnostics.plots import METRIC_LABELS, metric_label

    assert metric_label("fid/classifier:digits") == ("FID [classifier:digits]", "FID (lower is better)")
    for key in ("d_loss", "g_loss", "d_grad_norm", "g_grad_norm", "wasserstein_1", "high_quality"):
        title, ylabel = METRIC_LABELS[key]
        assert "_" not in title and ylabel != key


def test_demo_never_deletes_what_it_did_not_write(tmp_path, capsys):
    out = tmp_path / "p"
    out.mkdir()
    (out / "notes.txt").write_text("x")
    assert main(["demo", "--quick", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastreg demo: --out: ") and "notes.txt" in err and "did not write" in err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"] and (out / "notes.txt").read_text() == "x"
    afile = tmp_path / "afile"
    afile.write_text("y")
    assert main(["demo", "--quick", "--out", str(afile)]) == 2
    assert "is a file" in capsys.readouterr().err and afile.read_text() == "y"
    (out / MARKER).write_text("not json")  # a damaged marker: refused, nothing deleted
    with pytest.raises(DemoOutputError, match="not a demo marker"):
        run_demo(str(out), QUICK)
    assert (out / "notes.txt").exists()


def assert_tables_are_well_formed(text: str) -> None:
    """Every markdown table: its separator row and every body row have as many cells as its header."""
    lines = text.splitlines()
    for i, line in enumerate(lines[:-1]):
        if re.fullmatch(r"\|(-+:?\|)+", lines[i + 1]) and line.startswith("|"):
            width = line.count("|") - 1
            assert lines[i + 1].count("|") - 1 == width, (line, lines[i + 1])
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                assert row.count("|") - row.count("\\|") - 1 == width, (line, row)
