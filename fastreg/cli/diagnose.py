"""``fastreg diagnose <diagnostic> ...``: one diagnostic (PNG + JSON) or ``all`` (the report), on runs opened
with :func:`fastreg.train.runs.open_run`. ``fastreg diagnose RUN_DIR ...`` means ``fastreg diagnose all RUN_DIR``."""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

from .options import OneDefaultHelpFormatter, add_threads_option, extractor_help, flag

DIAGNOSTICS = ("histograms", "interpolation", "vanishing", "cross-test", "all")
MINIMUMS = {"samples": 1, "cross_samples": 1, "d_steps": 1, "record_every": 1, "pairs": 1, "k": 0}

# The options of the diagnostics, declared once: destination -> (argparse keywords); each diagnostic picks its own
# (with its own default or help where it differs).
OPTIONS = {
    "fixed_g": dict(action="store_true", help="also train a fresh D against the frozen G"),
    "d_steps": dict(type=int, default=500, help="D steps of the fresh D"),
    "variant": dict(default=argparse.SUPPRESS,
                    help="D loss of the extra and the fresh D's steps: gan, ns, lsgan, wgan, wgan-gp, bgan, "
                         "fgan:<div> (default: the run's variant)"),
    "k": dict(type=int, default=50, help="extra D steps of the run's D (the k:1 picture; 0: none)"),
    "samples": dict(type=int, default=1000, help="real and generated samples per histogram"),
    "pairs": dict(type=int, default=64, help="real-fake pairs"),
    "record_every": dict(type=int, default=25, help="record interval (D steps)"),
    "noise": dict(type=float, default=0.0,
                  help="> 0: also a run with instance noise of this sigma on D's inputs, on the same plot"),
    "all_checkpoints": dict(action="store_true", help="G of every kept checkpoint, not only the newest"),
    "other": dict(metavar="RUN_DIR", default=argparse.SUPPRESS,
                  help="a second run on the same data: Roth's cross-test"),
    "cross_samples": dict(type=int, default=10_000, help="generated samples per model (cross-test)"),
    "extractor": dict(default="auto"),  # help: extractor_help(), built when the parser is
}


def _implicit_all(args: list[str]) -> list[str]:
    """``diagnose RUN_DIR ...`` (an existing folder first, no diagnostic named) is ``diagnose all RUN_DIR ...``."""
    if args and args[0] not in DIAGNOSTICS and not args[0].startswith("-") and os.path.isdir(args[0]):
        return ["all", *args]
    return args


def add(commands) -> None:
    formatter = OneDefaultHelpFormatter
    diagnose = commands.add_parser(
        "diagnose", formatter_class=formatter, rewrite=_implicit_all,
        help="D histograms, interpolation profile, vanishing gradients, cross-test",
        description="The diagnostics of docs/design.md section 7 on trained runs (their newest checkpoint). Each "
                    "diagnostic writes <name>.png and <name>.json into --out; 'all' writes one report. "
                    "'fastreg diagnose RUN_DIR ...' is 'fastreg diagnose all RUN_DIR ...'.")
    diagnose.set_defaults(handler=run, value_errors_are_user_errors=True)
    diagnostics = diagnose.add_subparsers(dest="diagnostic", required=True, metavar="DIAGNOSTIC",
                                          parser_class=argparse.ArgumentParser)

    def add_diagnostic(name: str, help_text: str, options: dict, runs=("run",)) -> None:
        p = diagnostics.add_parser(name, help=help_text, description=help_text, formatter_class=formatter)
        for dest in runs:
            p.add_argument(dest, metavar={"run": "RUN_DIR", "run_a": "RUN_A", "run_b": "RUN_B"}[dest])
        p.add_argument("--out", default=argparse.SUPPRESS,
                       help=f"output folder (default: {'RUN_A' if len(runs) > 1 else 'RUN_DIR'}/diagnostics)")
        p.add_argument("--seed", type=int, default=0, help="seed of latents, real draws and the fresh D")
        p.add_argument("--device", default=argparse.SUPPRESS, help="cpu, cuda, ... (default: the run's)")
        add_threads_option(p)
        for dest, changes in options.items():
            p.add_argument(flag(dest), dest=dest, **{**OPTIONS[dest], **changes})

    add_diagnostic("histograms", "D-output histograms on real and fake samples with their overlap coefficient "
                                 "(Grewal et al. 2018, figs. 1-2)",
                   {"fixed_g": {}, "d_steps": {"help": "D steps of the fresh D (--fixed-g)"}, "variant": {}, "k": {},
                    "samples": {}})
    add_diagnostic("interpolation", "mean D logit and mean ||grad_x D|| along t x_real + (1 - t) G(z), "
                                    "t in [-0.5, 1.5] (Grewal et al. 2018, fig. 3)", {"pairs": {}})
    add_diagnostic("vanishing", "G's gradient norms under a fresh D trained against the frozen G, log scale "
                                "(Arjovsky & Bottou 2017, Thm 2.4/2.6)",
                   {"d_steps": {}, "record_every": {}, "noise": {}, "all_checkpoints": {}})
    add_diagnostic("cross-test", "Roth et al. 2017's cross-test of two runs on the same data: confusion matrices and "
                                 "cross false-positive rates",
                   {"samples": {"default": 10_000, "help": "generated samples per model"}}, runs=("run_a", "run_b"))
    add_diagnostic("all", "every diagnostic, FID/KID or toy metrics, as one report (report.md, diagnostics.json)",
                   {"other": {}, "k": {"help": "extra D steps of the k:1 histogram"}, "d_steps": {},
                    "record_every": {"help": "vanishing-gradient record interval"},
                    "noise": {"help": "> 0: vanishing gradients also with instance noise"},
                    "samples": {"help": "samples per histogram side and for FID/KID"}, "cross_samples": {},
                    "all_checkpoints": {"help": "vanishing gradients for every kept checkpoint, not only the newest"},
                    "extractor": {"help": extractor_help()}})


def run(args: argparse.Namespace) -> int:
    from ..diagnostics import DiagnoseOptions, commands, diagnose

    name = f"fastreg diagnose {args.diagnostic}"
    runs = {"RUN_A": args.run_a, "RUN_B": args.run_b} if args.diagnostic == "cross-test" else {"RUN_DIR": args.run}
    if getattr(args, "other", None) is not None:
        runs["--other"] = args.other
    from ..train.checkpoint import list_checkpoints

    for label, path in runs.items():
        if not os.path.isdir(path):
            print(f"{name}: {label}: no run folder {path!r}", file=sys.stderr)
            return 2
        if not list_checkpoints(path):  # before anything is written into it
            print(f"{name}: {label}: {path} is not a fastreg run (no checkpoint in "
                  f"{os.path.join(path, 'checkpoints')}); give a folder that fastreg train wrote", file=sys.stderr)
            return 2
    out, device = getattr(args, "out", None), getattr(args, "device", None)
    for dest, least in MINIMUMS.items():
        value = getattr(args, dest, least)
        if value < least:
            print(f"{name}: {flag(dest)}: must be at least {least}, got {value}", file=sys.stderr)
            return 2
    noise = getattr(args, "noise", 0.0)
    if not (math.isfinite(noise) and noise >= 0):
        print(f"{name}: noise: must be a finite number >= 0, got {noise}", file=sys.stderr)
        return 2
    if out is not None:  # before minutes of diagnostics, not after
        from ..train.run_lock import prepare_run_folder

        prepare_run_folder(out, "out")
    if args.diagnostic == "all":
        options = DiagnoseOptions(k=args.k, d_steps=args.d_steps, record_every=args.record_every,
                                  samples=args.samples, cross_samples=args.cross_samples,
                                  all_checkpoints=args.all_checkpoints, extractor=args.extractor, seed=args.seed,
                                  noise=args.noise)
        start = time.perf_counter()
        report = diagnose(args.run, out, getattr(args, "other", None), options, device=device)
        print(f"fastreg diagnose: report written to {report} ({time.perf_counter() - start:.0f} s)")
        return 0
    if args.diagnostic == "histograms":
        paths = commands.histograms_command(args.run, out, args.fixed_g, args.d_steps, getattr(args, "variant", None),
                                            args.k, args.samples, args.seed, device)
    elif args.diagnostic == "interpolation":
        paths = commands.interpolation_command(args.run, out, args.pairs, args.seed, device)
    elif args.diagnostic == "vanishing":
        paths = commands.vanishing_command(args.run, out, args.d_steps, args.record_every, args.noise,
                                           args.all_checkpoints, args.seed, device)
    else:
        paths = commands.cross_test_command(args.run_a, args.run_b, out, args.samples, args.seed, device)
    for path in paths:
        print(path)
    return 0
