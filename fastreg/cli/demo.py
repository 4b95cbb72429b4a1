"""``fastreg demo``: a thin front for :func:`fastreg.experiments.demo.run_demo`."""

from __future__ import annotations

import argparse
import sys
import time

from .options import OneDefaultHelpFormatter, add_threads_option


def add(commands) -> None:
    p = commands.add_parser("demo", help="unregularized vs Roth-regularized NS-GAN on digits and a 3-D toy",
                            formatter_class=OneDefaultHelpFormatter)
    p.add_argument("--out", default="runs/demo",
                   help="folder of the demo's runs and report: new, empty, or an earlier demo's (which it "
                        "replaces; it never deletes files it did not write)")
    p.add_argument("--quick", action="store_true", help="a few steps of each run (a smoke test)")
    p.add_argument("--jobs", type=int, default=None,
                   help="independent runs trained at once, each in its own process with --threads threads "
                        "(default: one per CPU core, at most the number of runs; results are the same as with 1)")
    add_threads_option(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..experiments.demo import DEMO, QUICK, DemoOutputError, run_demo

    if args.jobs is not None and args.jobs < 1:
        print(f"fastreg demo: --jobs: must be at least 1, got {args.jobs}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        report = run_demo(args.out, QUICK if args.quick else DEMO, jobs=args.jobs, threads=args.threads)
    except DemoOutputError as exc:
        print(f"fastreg demo: --out: {exc}", file=sys.stderr)
        return 2
    print(f"fastreg demo: report written to {report} ({time.perf_counter() - start:.0f} s)")
    return 0
