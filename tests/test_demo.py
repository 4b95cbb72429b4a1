"""The demo's code path at a smoke-test budget: four runs and a report that shows them side by side."""

import re

import pytest

from fastreg.cli import main
from fastreg.demo import MARKER, QUICK, DemoBudget, DemoOutputError, demo_configs, run_demo, verdict
from fastreg.regularizer_table import REGULARIZER_FIELDS


def test_demo_pairs_differ_only_in_the_regularizer(tmp_path):
    for budget in (QUICK, DemoBudget()):
        configs = demo_configs(str(tmp_path), budget)
        assert set(configs) == {f"{d}-{m}-seed{s}" for d in ("digits", "toy3d") for m in ("ns", "ns-roth")
                                for s in budget.seeds}
        for dataset in ("digits", "toy3d"):
            for seed in budget.seeds:
                plain, roth = (configs[f"{dataset}-{m}-seed{seed}"].with_resolved_architecture()
                               for m in ("ns", "ns-roth"))
                differing = {k for k in vars(plain) if getattr(plain, k) != getattr(roth, k)}
                assert differing == {"reg", "gamma", "gamma_anneal", "out"}
                assert differing <= {*REGULARIZER_FIELDS, "out"}
                assert (roth.reg, roth.gamma, roth.gamma_anneal, plain.seed) == ("roth", 2.0, 0.01, seed)
                if dataset == "digits":  # Radford et al.'s D with batch norm on both sides, as Roth et al.'s code
                    assert plain.d_norm == roth.d_norm == "batch"


def test_default_demo_keeps_its_total_budget():
    """Three seeds per side; the digits runs (nearly all of the time) at a third of the single seed's former
    1,500 steps, the cheap toy runs at the former 2,000."""
    budget = DemoBudget()
    assert len(budget.seeds) == 3
    assert len(budget.seeds) * budget.digits_steps == 1500 and budget.toy_steps == 2000


def test_verdict_rule():
    assert verdict("FID", {0: 10.0, 1: 12.0}, {0: 8.0, 1: 9.0}).startswith(
        "Roth's regularizer gave the lower final FID on all 2 seeds (mean 8.5 ± 0.71 with Roth vs 11 ± 1.4 without")
    assert verdict("FID", {0: 10.0, 1: 12.0}, {0: 11.0, 1: 13.0}).startswith(
        "Roth's regularizer gave the higher (worse) final FID on all 2 seeds")
    assert verdict("W1", {0: 1.0, 1: 2.0, 2: 3.0}, {0: 0.5, 1: 2.5, 2: 2.0}).startswith(
        "no consistent difference: Roth's regularizer gave the lower final W1 on 2 of 3 seeds")


def test_quick_demo_writes_a_report_that_reads_itself(tmp_path):
    report = run_demo(str(tmp_path / "demo"), QUICK)
    text = open(report).read()
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (tmp_path / "demo" / image).exists(), image
    # what was compared, on how many seeds, the spread, a verdict per comparison
    assert text.count("**Verdict**: ") == 2 and "## Verdicts" in text
    assert re.search(r"\*\*Verdict\*\*: .*final FID \[classifier:digits\].*\(mean [\d.e+-]+ ± [\d.e+-]+ with Roth vs "
                     r"[\d.e+-]+ ± [\d.e+-]+ without, mean ± std over seeds 0, 1\)\.", text)
    assert re.search(r"\*\*Verdict\*\*: .*final Wasserstein-1 to the mixture", text)
    assert "| D normalization | batch | batch |" in text and "| model (G and D) | dcgan | dcgan |" in text
    assert "| channel width | 8 | 8 |" in text and "| data | digits, 8x8 | digits, 8x8 |" in text
    assert "| seeds | 0, 1 | 0, 1 |" in text and "| generator steps | 4 | 4 |" in text
    assert text.count("The two sides differ in: regularizer.") == 2
    for name in ("digits-ns-seed0", "digits-ns-roth-seed1", "toy3d-ns-seed0", "toy3d-ns-roth-seed1"):
        assert f"| {name} |" in text
    assert re.search(r"\| \*\*ns-roth, mean ± std\*\* \| 2 seeds \|", text)
    # words, not keys: definitions, scale, which generator, the toy's plane picture
    assert "D gradient norm: the L2 norm of the gradient of D's loss" in text
    assert "real-data floor" in text and "KID is the unbiased polynomial-kernel MMD^2" in text
    assert "from the EMA generator" in text and "toy3d_plane.png" in text
    assert "projected onto the mixture's plane" in text
    (tmp_path / "demo" / "notes.txt").write_text("mine")  # a file the demo did not write
    (tmp_path / "demo" / "report.md").write_text("stale")
    run_demo(str(tmp_path / "demo"), QUICK)  # re-runnable over its own output, which it replaces
    assert (tmp_path / "demo" / "notes.txt").read_text() == "mine"
    assert (tmp_path / "demo" / "report.md").read_text() != "stale"


def test_curve_plots_have_titles_and_axis_labels_in_words(tmp_path):
    from fastreg.plots import METRIC_LABELS, metric_label

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
