"""The demo's code path at a smoke-test budget: four runs and a report that shows them side by side."""

import re

from fastreg.demo import QUICK, DemoBudget, demo_configs, run_demo
from fastreg.regularizer_table import REGULARIZER_FIELDS


def test_demo_pairs_differ_only_in_the_regularizer(tmp_path):
    for budget in (QUICK, DemoBudget()):
        configs = demo_configs(str(tmp_path), budget)
        assert set(configs) == {"digits-ns", "digits-ns-roth", "toy3d-ns", "toy3d-ns-roth"}
        for dataset in ("digits", "toy3d"):
            plain, roth = (configs[f"{dataset}-{side}"].with_resolved_architecture() for side in ("ns", "ns-roth"))
            differing = {k for k in vars(plain) if getattr(plain, k) != getattr(roth, k)}
            assert differing == {"reg", "gamma", "gamma_anneal", "out"} and differing <= {*REGULARIZER_FIELDS, "out"}
            assert (roth.reg, roth.gamma, roth.gamma_anneal) == ("roth", 2.0, 0.01)
        # both digits runs train Radford et al.'s D with batch norm, as Roth et al.'s code does
        assert configs["digits-ns"].d_norm == configs["digits-ns-roth"].d_norm == "batch"


def test_quick_demo_writes_report(tmp_path):
    report = run_demo(str(tmp_path / "demo"), QUICK)
    text = open(report).read()
    for name in ("digits-ns", "digits-ns-roth", "toy3d-ns", "toy3d-ns-roth"):
        assert f"| {name} |" in text
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (tmp_path / "demo" / image).exists(), image
    assert re.search(r"\| toy3d-ns-roth \| 4 \| \d+ \| [\d.]+ \| [-\d.]+ \| [-\d.]+ \| [\d.e+-]+ \| \d/7 \|", text)
    assert "| FID[classifier:digits] | W1 |" in text and "digits_evaluation.png" in text
    assert re.search(r"\| digits-ns \|.*\| - \| - \| [\d.]+ \| - \| [\d.]+ \|$", text, re.M)  # FID, no W1
    assert re.search(r"\| toy3d-ns \|.*\| \d/7 \| [\d.]+ \| - \| [\d.]+ \| [\d.]+ \|$", text, re.M)
    run_demo(str(tmp_path / "demo"), QUICK)  # re-runnable over its own output
