"""The amortized-regularization study of issue 26: what each way of paying less for Roth's penalty costs per
iteration and what it does to the final FID.

Settings (:data:`SETTINGS`, all Roth's annealed preset on the same DCGAN D with batch norm, the same budget):
the unregularized baseline, every-step exact, lazy k = 4, 8, 16 (``reg_every``), the sub-batch penalty on a
quarter of the rows (``reg_fraction``), the finite-difference gradient (``penalty_grad``), and a combination.
For each dataset it

1. times full iterations (D and G) of every setting in one process, interleaved (each setting once per round,
   whole lazy cycles of 16 iterations), and reports each median over the unregularized one's: the *iteration
   time ratio*. The run records the load and the calibration kernel (benchmarks/quality.py) and says whether
   it was noisy. Every dataset is timed before any training run, so the quiet stretch it needs comes first;
2. trains every setting for each seed at the scale's budget (fastreg.experiments.budget) and reads the final
   FID (the dataset's classifier features at the cpu and full scales);
3. writes ``study.json`` and ``study.md`` (the table: time ratio, FID mean +- std over seeds, and whether the
   setting meets the goal: ratio <= 1.15 and FID mean <= every-step exact's mean + its seed std).

    python benchmarks/amortized_study.py --scale tiny --seeds 0 --data digits --out /tmp/study   # smoke
    python benchmarks/amortized_study.py --scale cpu --data digits,mnist-5k --out runs/amortized  # the study
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

import torch  # noqa: E402

import quality  # noqa: E402
from fastreg.experiments import runs  # noqa: E402
from fastreg.experiments.budget import SCALES  # noqa: E402
from fastreg.ops.backend import device_tag  # noqa: E402
from fastreg.regularizers import REGULARIZERS  # noqa: E402
from fastreg.train.trainer import Trainer  # noqa: E402

ROTH = REGULARIZERS["roth"].preset(annealed=True)  # gamma_0 = 2, alpha = 0.01 (Roth et al.)
FD = "finite-difference"
SETTINGS = {
    "unregularized": {"reg": "none"},
    "exact": dict(ROTH),
    "lazy4": {**ROTH, "reg_every": 4},
    "lazy8": {**ROTH, "reg_every": 8},
    "lazy16": {**ROTH, "reg_every": 16},
    "subbatch0.25": {**ROTH, "reg_fraction": 0.25},
    "finite-difference": {**ROTH, "penalty_grad": FD},
    "lazy4+subbatch0.5+fd": {**ROTH, "reg_every": 4, "reg_fraction": 0.5, "penalty_grad": FD},
}
CYCLE = 16  # iterations per timed call: a whole number of lazy cycles for every k
TIME_RATIO_GOAL = 1.15


def time_iterations(data: str, scale, rounds: int, out: str) -> dict:
    """Median seconds per iteration of every setting, interleaved rounds of ``CYCLE`` iterations."""
    trainers = {}
    for name, fields in SETTINGS.items():
        config = runs.image_config(scale, data, os.path.join(out, "timing", name), 0, eval_every=0, **fields)
        trainers[name] = Trainer(config)
        for _ in range(2):
            trainers[name].iteration()
    times = {name: [] for name in SETTINGS}
    for _ in range(rounds):
        for name, trainer in trainers.items():
            start = time.perf_counter()
            for _ in range(CYCLE):
                trainer.iteration()
            times[name].append((time.perf_counter() - start) / CYCLE)
    return {name: statistics.median(t) for name, t in times.items()}


def fid_runs(data: str, scale, out: str) -> dict:
    """Final FID of every setting for each of the scale's seeds."""
    results = {}
    for name, fields in SETTINGS.items():
        results[name] = []
        for seed in scale.seeds:
            config = runs.image_config(scale, data, os.path.join(out, data, name, f"seed{seed}"), seed, **fields)
            run = runs.train_run(f"{name}-seed{seed}", config)
            results[name].append(run.final("fid"))
            print(f"{data} {name} seed {seed}: FID {results[name][-1]:.3f} ({run.seconds:.0f} s)", flush=True)
    return results


def table(data: str, seconds: dict, fids: dict, verdict: dict) -> list[str]:
    base = seconds["unregularized"]
    exact = fids["exact"]
    exact_mean = statistics.mean(exact)
    exact_std = statistics.stdev(exact) if len(exact) > 1 else 0.0
    noisy = " (timing NOISY: " + "; ".join(verdict["reasons"]) + ")" if verdict["noisy"] else ""
    lines = [f"### {data}{noisy}", "",
             "| setting | ms / iteration | time ratio | FID mean | FID std | seeds | meets the goal |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for name in SETTINGS:
        values = fids[name]
        mean = statistics.mean(values)
        std = statistics.stdev(values) if len(values) > 1 else float("nan")
        ratio = seconds[name] / base
        goal = "" if name in ("unregularized", "exact") else (
            "yes" if ratio <= TIME_RATIO_GOAL and mean <= exact_mean + exact_std else "no")
        lines.append(f"| {name} | {seconds[name] * 1e3:.1f} | {ratio:.2f} | {mean:.3f} | {std:.3f} | "
                     f"{len(values)} | {goal} |")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="cpu", choices=sorted(SCALES))
    parser.add_argument("--data", default="digits,mnist-5k", help="comma-separated datasets")
    parser.add_argument("--seeds", nargs="*", type=int, default=None, help="default: the scale's (3)")
    parser.add_argument("--rounds", type=int, default=8, help="interleaved timing rounds")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True)
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite study.md from OUT/study.json (verdicts recomputed), train nothing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scale = SCALES[args.scale].with_seeds(args.seeds)
    os.makedirs(args.out, exist_ok=True)
    report = {"scale": scale.name, "seeds": list(scale.seeds), "threads": args.threads, "settings": SETTINGS,
              "datasets": {}}
    if args.report_only:
        write_report(args.out, rejudged(json.load(open(os.path.join(args.out, "study.json")))))
        return
    timings = {}
    start = quality.snapshot()  # the load of other work: before the study's own timing raises the load average
    for data in args.data.split(","):  # every timing first, in one quiet stretch; then the training runs
        now = quality.snapshot()
        before = {**now, "loadavg_1min": start["loadavg_1min"], "loadavg_1min_incl_study": now["loadavg_1min"]}
        seconds = time_iterations(data, scale, args.rounds, args.out)
        record = {"quality": {"before": before, "after": quality.snapshot(),
                              "idle_calibration_s": quality.load_idle().get(
                                  quality.machine_key(device_tag(), torch.get_num_threads()))}, "benchmarks": []}
        timings[data] = (seconds, record, quality.assess(record))
        print(f"{data}: timed ({'NOISY' if timings[data][2]['noisy'] else 'quiet'}): "
              + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in seconds.items()), flush=True)
    for data, (seconds, record, verdict) in timings.items():
        fids = fid_runs(data, scale, args.out)
        report["datasets"][data] = {"seconds_per_iteration": seconds, "final_fid": fids, "timing_quality": record,
                                    "timing_verdict": verdict}
    with open(os.path.join(args.out, "study.json"), "w") as f:
        json.dump(report, f, indent=1)
    write_report(args.out, report)


def rejudged(report: dict) -> dict:
    """``report`` with every timing verdict recomputed by benchmarks/quality.py from its recorded snapshots."""
    for entry in report["datasets"].values():
        entry["timing_verdict"] = quality.assess(entry["timing_quality"])
    return report


def write_report(out: str, report: dict) -> None:
    """study.md from study.json's contents: the header and one table per dataset."""
    lines = [f"## Amortized regularization (scale {report['scale']}, seeds {report['seeds']}, {report['threads']} "
             f"thread(s))", "", f"Time ratio: median iteration time over the unregularized one's, one process, "
             f"interleaved; goal: ratio <= {TIME_RATIO_GOAL} and FID mean <= every-step exact's mean + its seed std. "
             "Timing load: the load average before the study's first timing (its own timing raises the 1-minute "
             "average for the next dataset's), and the calibration kernel before and after each dataset's timing.",
             ""]
    for data, entry in report["datasets"].items():
        lines += table(data, entry["seconds_per_iteration"], entry["final_fid"], entry["timing_verdict"])
    with open(os.path.join(out, "study.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
