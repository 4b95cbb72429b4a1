"""``fastreg experiment``: the paper reproductions of :mod:`fastreg.experiments`."""

from __future__ import annotations

import argparse
import sys
import time

from .options import OneDefaultHelpFormatter, add_download_option, add_threads_option


def add(commands) -> None:
    from ..experiments import EXPERIMENTS, SCALES

    p = commands.add_parser("experiment", formatter_class=OneDefaultHelpFormatter,
                            help="reproduce a source paper's claims (report.md with figures and a claims table)")
    p.add_argument("name", metavar="NAME", help=f"all, or one of: {', '.join(EXPERIMENTS)}")
    scale = p.add_mutually_exclusive_group()
    scale.add_argument("--quick", action="store_const", const="quick", dest="scale",
                       help="the small CPU scale (all experiments in about 20 minutes on 2 cores)")
    scale.add_argument("--scale", choices=tuple(SCALES), dest="scale",
                       help="tiny (a few steps, a smoke test), quick, cpu (about an hour on 2 cores: the claims a "
                            "CPU can reach), or full (the papers' budgets; default)")
    p.add_argument("--out", default="runs/experiments", help="parent folder: results land in OUT/NAME/")
    p.add_argument("--data", default=None,
                   help="image dataset of the image experiments (default digits; roth-toy: a toy set; "
                        "roth-stability-grid and stacked-mnist always run on mnist-5k and stacked-mnist-5k, "
                        "their declared protocols)")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="seeds (multi-seed experiments use all, the others the first; default: the scale's)")
    p.add_argument("--jobs", type=int, default=1,
                   help="independent runs trained at once, one process each (roth-stability-grid, stacked-mnist)")
    p.add_argument("--data-root", default=None,
                   help="folder of --data, as on fastreg train (default: $FASTREG_DATA, else ./data)")
    add_download_option(p)
    add_threads_option(p)
    p.set_defaults(handler=run, value_errors_are_user_errors=True)


def run(args: argparse.Namespace) -> int:
    from .. import data
    from ..experiments import FIXED_DATA, SCALES, check_name, run_all, run_experiment

    try:
        check_name(args.name)
    except ValueError as exc:
        print(f"fastreg experiment: {exc}", file=sys.stderr)
        return 2
    fixed = FIXED_DATA.get(args.name)
    if fixed is not None and args.data not in (None, fixed):
        print(f"fastreg experiment: data: {args.name} runs on {fixed} (its declared protocol), got {args.data!r}",
              file=sys.stderr)
        return 2
    args.data = args.data or "digits"
    if args.data.partition(":")[0] not in data.available():
        print(f"fastreg experiment: data: unknown dataset {args.data!r}; expected one of "
              f"{', '.join(data.available())}", file=sys.stderr)
        return 2
    scale = SCALES[args.scale or "full"].with_seeds(args.seeds)
    if args.jobs < 1:
        print(f"fastreg experiment: jobs: must be at least 1, got {args.jobs}", file=sys.stderr)
        return 2
    if args.data_root is not None:  # the experiments' runs read their data root from FASTREG_DATA
        import os

        os.environ["FASTREG_DATA"] = os.path.abspath(os.path.expanduser(args.data_root))
    if args.download:
        from .train import download

        download(args.data, args.data_root, scale.resolution)
    start = time.perf_counter()
    if args.name == "all":
        reports, path = run_all(args.out, scale, args.data, jobs=args.jobs)
    else:
        reports = [run_experiment(args.name, args.out, scale, args.data, args.jobs)]
        path = f"{reports[0].out}/report.md"
    for r in reports:
        verdicts = ", ".join(c.held for c in r.claims)
        print(f"{r.name}: {verdicts}")
    print(f"fastreg experiment: report written to {path} ({time.perf_counter() - start:.0f} s)")
    return 0
