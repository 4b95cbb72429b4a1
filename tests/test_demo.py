"""The demo's code path at a smoke-test budget: four runs and a report that shows them side by side."""

import re

import pytest

from fastreg.cli import main
from fastreg.demo import MARKER, QUICK, DemoOutputError, demo_configs, run_demo


def test_demo_pairs_differ_only_in_the_regularizer(tmp_path):
    configs = demo_configs(str(tmp_path), QUICK)
    assert set(configs) == {"digits-ns", "digits-ns-roth", "toy3d-ns", "toy3d-ns-roth"}
    for dataset in ("digits", "toy3d"):
        plain, roth = configs[f"{dataset}-ns"], configs[f"{dataset}-ns-roth"]
        differing = {k for k in vars(plain) if getattr(plain, k) != getattr(roth, k)}
        assert differing == {"reg", "gamma", "gamma_anneal", "out"}
        assert (roth.reg, roth.gamma, roth.gamma_anneal) == ("roth", 2.0, 0.01)


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
    (tmp_path / "demo" / "notes.txt").write_text("mine")  # a file the demo did not write
    (tmp_path / "demo" / "report.md").write_text("stale")
    run_demo(str(tmp_path / "demo"), QUICK)  # re-runnable over its own output, which it replaces
    assert (tmp_path / "demo" / "notes.txt").read_text() == "mine"
    assert (tmp_path / "demo" / "report.md").read_text() != "stale"


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
