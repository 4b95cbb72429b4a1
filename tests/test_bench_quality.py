"""Benchmarks that refuse to lie (issue 26): benchmarks/quality.py's verdict on synthetic pytest-benchmark JSON,
and benchmarks/report.py leaving noisy runs out of its tables."""

import importlib.util
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")


def _load(name):
    sys.path.insert(0, BENCH)
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", os.path.join(BENCH, f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(BENCH)


quality, report = _load("quality"), _load("report")


def _bench(impl, median, iqr, group="g"):
    return {"name": impl, "fullname": f"bench::{impl}", "group": group,
            "stats": {"median": median, "iqr": iqr}, "extra_info": {"impl": impl, "baseline": "ref"}}


def _run(benches, load=0.1, cpus=2, before=0.010, after=0.010, idle=0.010):
    return {"machine_info": {"cpu": {"brand_raw": "Test CPU"}, "torch_threads": 1, "fastreg": {"torch": "x"}},
            "datetime": "2026-12-03T00:00:00", "benchmarks": benches,
            "quality": {"before": {"loadavg_1min": load, "cpus": cpus, "calibration_s": before},
                        "after": {"loadavg_1min": load, "cpus": cpus, "calibration_s": after},
                        "machine": "Test CPU / 1 threads", "idle_calibration_s": idle}}


QUIET = [_bench("ref", 1.0e-3, 0.05e-3), _bench("native", 0.3e-3, 0.02e-3), _bench("other", 2.0e-3, 0.1e-3)]


def test_a_quiet_calibrated_run_is_not_noisy():
    verdict = quality.assess(_run(QUIET))
    assert verdict == {"noisy": False, "calibrated": True, "reasons": [], "wide": []}


def test_a_slow_calibration_kernel_makes_the_run_noisy():
    verdict = quality.assess(_run(QUIET, after=0.0126))  # 1.26x idle after the run; the limit is 1.25x
    assert verdict["noisy"] and verdict["reasons"] == [
        "calibration kernel 1.26x its idle time after the run (limit 1.25x)"]
    assert not quality.assess(_run(QUIET, before=0.0124, after=0.0124))["noisy"]  # 1.24x: within the limit


def test_the_load_average_makes_the_run_noisy():
    verdict = quality.assess(_run(QUIET, load=1.04, cpus=2))  # 0.52 per CPU; the limit is 0.25
    assert verdict["noisy"] and verdict["reasons"][0].startswith("load average 1.04 before the run on 2 CPUs")
    assert not quality.assess(_run(QUIET, load=0.49, cpus=2))["noisy"]


def test_wide_spreads_make_the_run_noisy_beyond_a_share():
    one_wide = QUIET[:2] + [_bench("other", 2.0e-3, 0.5e-3)] + [_bench(f"q{i}", 1e-3, 1e-5) for i in range(3)]
    verdict = quality.assess(_run(one_wide))  # 1 of 6 wide (IQR / median = 0.25): under the 20% share
    assert not verdict["noisy"] and verdict["wide"] == ["bench::other"]
    two_wide = one_wide + [_bench("loud", 1e-3, 0.9e-3)]
    verdict = quality.assess(_run(two_wide))  # 2 of 7: noisy
    assert verdict["noisy"] and verdict["reasons"] == ["2 of 7 benchmarks have IQR / median >= 0.25"]


def test_an_uncalibrated_or_old_run_is_judged_by_its_spread_and_says_so():
    verdict = quality.assess(_run(QUIET, idle=None))
    assert not verdict["noisy"] and not verdict["calibrated"] and verdict["reasons"][0].startswith("uncalibrated")
    old = _run(QUIET)
    del old["quality"]
    assert not quality.assess(old)["noisy"]
    old["benchmarks"] = [_bench("a", 1.0, 0.9), _bench("b", 1.0, 0.1)]
    assert quality.assess(old)["noisy"]


def test_a_run_marked_by_hand_is_noisy():
    run = _run(QUIET)
    run["marked_noisy"] = "measured under load"
    verdict = quality.assess(run)
    assert verdict["noisy"] and verdict["reasons"] == ["measured under load"]


def test_the_report_leaves_noisy_runs_out_and_names_them():
    quiet, loud = _run(QUIET), _run(QUIET, after=0.02)
    text = report.render([("quiet.json", quiet), ("loud.json", loud)])
    assert "### quiet.json" in text and "### loud.json" not in text
    assert "- `loud.json`: calibration kernel 2.00x its idle time after the run (limit 1.25x)" in text
    assert "quality: load average 0.10 on 2 CPUs; calibration 1.00x idle before, 1.00x after" in text
    shown = report.render([("loud.json", loud)], include_noisy=True)
    assert "### loud.json (NOISY: not a result)" in shown and "| g | native | 300.0 |" in shown


def test_the_report_marks_a_wide_benchmark():
    run = _run(QUIET[:2] + [_bench("other", 2.0e-3, 0.6e-3)] + [_bench(f"q{i}", 1e-3, 1e-5) for i in range(3)])
    assert "| g | other (wide) | 2000.0 |" in report.render([("r.json", run)])


def test_every_committed_result_is_a_quiet_run_and_shown():
    """The loaded Intel runs of issue 26 were replaced by quiet ones: a noisy result is not committed as a result,
    and each committed one is shown in benchmarks/README.md, with its quality record."""
    folder = os.path.join(BENCH, "results")
    names = sorted(n for n in os.listdir(folder) if n.endswith(".json"))
    assert names
    with open(os.path.join(BENCH, "README.md")) as f:
        readme = f.read()
    for name in names:
        with open(os.path.join(folder, name)) as f:
            run = json.load(f)
        verdict = quality.assess(run)
        assert "quality" in run and verdict["calibrated"] and not verdict["noisy"], (name, verdict["reasons"])
        assert f"### {name}" in readme and "marked noisy" not in readme


def test_the_calibration_kernel_times_something():
    assert 0 < quality.calibration_time(repeats=3) < 5.0
