"""Whether a benchmark run can be trusted: the machine's load, a calibration kernel, the spread of each timing.

Every `make bench` run records, before its first benchmark and after its last (benchmarks/conftest.py):

- the load average (``os.getloadavg()``, 1 minute) and the number of CPUs;
- the time of a fixed calibration kernel (:func:`calibration_time`: the median of ``CALIBRATION_REPEATS``
  float32 ``384x384 @ 384x384`` matrix products at the run's thread count), against the idle time of the same
  kernel on the same machine and thread count recorded in ``benchmarks/calibration.json``
  (``python benchmarks/quality.py --record`` on a quiet machine writes it).

:func:`assess` turns those and the timings into a verdict. A run is *noisy* when

- the load average before the run is at least ``LOAD_LIMIT`` per CPU (other work was running), or
- the calibration kernel took at least ``CALIBRATION_LIMIT`` times its idle time, before or after the run
  (the machine was slower than idle), or
- more than ``NOISY_SHARE`` of its benchmarks have ``IQR / median >= SPREAD_LIMIT`` (their timings do not
  agree with themselves).

A run without an idle record for its machine is judged by its load and spread alone and says so
(``uncalibrated``); a run with no quality record at all (written before this check existed) by its spread
alone. ``benchmarks/report.py`` leaves noisy runs out of the tables (``--include-noisy`` shows them,
marked). A noisy result is not a result: do not commit it as one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

HERE = os.path.dirname(os.path.abspath(__file__))
IDLE_FILE = os.path.join(HERE, "calibration.json")
CALIBRATION_SIZE, CALIBRATION_REPEATS = 384, 30
LOAD_LIMIT = 0.25         # load average per CPU before the run
CALIBRATION_LIMIT = 1.25  # calibration time / idle calibration time
SPREAD_LIMIT = 0.25       # IQR / median of one benchmark
NOISY_SHARE = 0.2         # share of benchmarks with a wide spread that makes the run noisy


def calibration_time(repeats: int = CALIBRATION_REPEATS) -> float:
    """Median seconds of one float32 ``CALIBRATION_SIZE``-square matrix product at torch's thread count."""
    import torch

    g = torch.Generator().manual_seed(0)
    a = torch.randn(CALIBRATION_SIZE, CALIBRATION_SIZE, generator=g)
    b = torch.randn(CALIBRATION_SIZE, CALIBRATION_SIZE, generator=g)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine_key(cpu: str, threads: int) -> str:
    """The key of a machine's idle record: its CPU's name and the thread count."""
    return f"{cpu} / {threads} threads"


def load_idle(path: str = IDLE_FILE) -> dict:
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def snapshot() -> dict:
    """The load average, the CPU count and the calibration time now."""
    return {"loadavg_1min": os.getloadavg()[0], "cpus": os.cpu_count(), "calibration_s": calibration_time()}


def spread(bench: dict) -> float:
    """IQR / median of one pytest-benchmark entry."""
    stats = bench["stats"]
    return stats["iqr"] / stats["median"] if stats["median"] > 0 else float("inf")


def assess(run: dict) -> dict:
    """The verdict on one pytest-benchmark JSON run: ``{"noisy", "calibrated", "reasons", "wide"}``, ``wide``
    naming the benchmarks whose ``IQR / median >= SPREAD_LIMIT``. Reads the run's ``quality`` record (the load
    and calibration snapshots, the idle time) where it has one."""
    reasons = []
    quality = run.get("quality")
    calibrated = False
    if quality is None:
        reasons.append("no load or calibration record (written before benchmarks/quality.py): judged by its spread")
    else:
        before, after = quality.get("before", {}), quality.get("after", {})
        cpus = before.get("cpus") or 1
        if before.get("loadavg_1min", 0.0) >= LOAD_LIMIT * cpus:
            reasons.append(f"load average {before['loadavg_1min']:.2f} before the run on {cpus} CPUs "
                           f"(limit {LOAD_LIMIT * cpus:.2f})")
        idle = quality.get("idle_calibration_s")
        if idle is None:
            reasons.append("uncalibrated: no idle calibration time recorded for this machine and thread count "
                           "(python benchmarks/quality.py --record on a quiet machine)")
        else:
            calibrated = True
            for when, snap in (("before", before), ("after", after)):
                if "calibration_s" in snap and snap["calibration_s"] >= CALIBRATION_LIMIT * idle:
                    reasons.append(f"calibration kernel {snap['calibration_s'] / idle:.2f}x its idle time {when} "
                                   f"the run (limit {CALIBRATION_LIMIT:g}x)")
    benches = run.get("benchmarks", [])
    wide = [b.get("fullname", b.get("name", "?")) for b in benches if spread(b) >= SPREAD_LIMIT]
    noisy_spread = bool(benches) and len(wide) > NOISY_SHARE * len(benches)
    if noisy_spread:
        reasons.append(f"{len(wide)} of {len(benches)} benchmarks have IQR / median >= {SPREAD_LIMIT:g}")
    noisy = noisy_spread or any(not r.startswith(("uncalibrated", "no load")) for r in reasons)
    if run.get("marked_noisy"):
        noisy = True
        reasons.insert(0, run["marked_noisy"])
    return {"noisy": noisy, "calibrated": calibrated, "reasons": reasons, "wide": wide}


def main() -> None:
    parser = argparse.ArgumentParser(description="Measure the calibration kernel; --record stores it as this "
                                                 "machine's idle time (run it on a quiet machine only).")
    parser.add_argument("--record", action="store_true", help="write the time into benchmarks/calibration.json")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    import torch

    from fastreg.ops.backend import device_tag

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    snap = snapshot()
    key = machine_key(device_tag(), torch.get_num_threads())
    idle = load_idle().get(key)
    print(f"{key}: calibration {snap['calibration_s'] * 1e3:.3f} ms, load average {snap['loadavg_1min']:.2f} on "
          f"{snap['cpus']} CPUs" + (f", recorded idle {idle * 1e3:.3f} ms" if idle else ", no idle record"))
    if args.record:
        if snap["loadavg_1min"] >= LOAD_LIMIT * (snap["cpus"] or 1):
            raise SystemExit(f"quality.py: --record refused: load average {snap['loadavg_1min']:.2f} is not idle")
        table = load_idle()
        table[key] = snap["calibration_s"]
        with open(IDLE_FILE, "w") as f:
            json.dump(table, f, indent=1, sort_keys=True)
            f.write("\n")
        print(f"recorded into {IDLE_FILE}")


if __name__ == "__main__":
    main()
