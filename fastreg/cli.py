"""The `fastreg` command line (also `python -m fastreg`).

    fastreg train --variant ns --reg roth --gamma 2.0 --gamma-anneal 0.01 --data digits --steps 3000 --out runs/x
    fastreg train --config run.yaml --steps 100     # YAML, then flags on top
    fastreg train --resume runs/x                   # continue a run from its last checkpoint
    torchrun --nproc_per_node=2 -m fastreg train ... # data-parallel on 2 processes (gloo on CPU, NCCL on GPU)

Exit status: 0 done, 2 bad input (config, data, paths, checkpoint), 3 stopped on a non-finite value.
    fastreg fid runs/x --floor                      # FID/KID vs its data, named by extractor (toy: W1, modes)
    fastreg fid runs/x runs/y                       # between two runs, image folders or data:<name>
    fastreg diagnose all runs/x --other runs/y      # histograms, interpolation, vanishing gradients, cross-test
    fastreg diagnose vanishing runs/x --noise 0.5   # one diagnostic: <name>.png and <name>.json
    fastreg experiment all --quick                  # every paper reproduction, small; runs/experiments/index.md
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time
import typing

from .torch_files import DamagedFileError, UnsafeFileError
from .train.checkpoint import CheckpointError
from .train.config import ConfigError, TrainConfig, from_dict, load_yaml, to_dict
from .train.nonfinite import NonFiniteError


class OneDefaultHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: X)`` only where the help does not state its default itself and there is one to show
    (not None, not a suppressed or an off switch's False), so no option's help shows two defaults."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or action.default in (None, argparse.SUPPRESS, False):
            return text
        return super()._get_help_string(action)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per TrainConfig field; defaults shown in the help, not injected into the namespace."""
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        hint = hints[f.name]
        help_text = f.metadata.get("help", "")
        if "default" not in help_text.lower():
            help_text += f" (default: {f.default})"
        kwargs = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
        args = typing.get_args(hint)
        base = next((a for a in args if a is not type(None)), hint) if args else hint
        if base is bool:
            parser.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction, **kwargs)
        elif typing.get_origin(base) is tuple:
            parser.add_argument(_flag(f.name), type=float, nargs=2, metavar=("B1", "B2"), **kwargs)
        else:
            parser.add_argument(_flag(f.name), type=base, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastreg", description="Stable, fast GAN training.")
    parser.add_argument("--version", action=_VersionAction,
                        help="print the version, the compiled kernels and the backend in use, and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = commands.add_parser("train", help="train a GAN variant",
                                formatter_class=OneDefaultHelpFormatter)
    train.add_argument("--config", help="YAML file of config fields; flags given here override it")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    _add_config_arguments(train)
    demo = commands.add_parser("demo", help="unregularized vs Roth-regularized NS-GAN on digits and a 3-D toy",
                               formatter_class=OneDefaultHelpFormatter)
    demo.add_argument("--out", default="runs/demo",
                      help="folder of the demo's runs and report: new, empty, or an earlier demo's (which it "
                           "replaces; it never deletes files it did not write)")
    demo.add_argument("--quick", action="store_true", help="a few steps of each run (a smoke test)")
    _add_evaluation_commands(commands)
    _add_experiment_command(commands)
    return parser


class _VersionAction(argparse.Action):
    """``--version``: the line is built only when asked for (it queries torch.cuda)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from . import __version__
        from .backend import describe
        print(f"fastreg {__version__} ({describe()})")
        parser.exit()


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """defaults < --config YAML < flags; then validated."""
    base = load_yaml(args.config) if args.config else TrainConfig()
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    if "betas" in overrides:
        overrides["betas"] = tuple(overrides["betas"])
    return from_dict({**to_dict(base), **overrides}).validate()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            from .demo import DEMO, QUICK, DemoOutputError, run_demo

            start = time.perf_counter()
            try:
                report = run_demo(args.out, QUICK if args.quick else DEMO)
            except DemoOutputError as exc:
                print(f"fastreg demo: --out: {exc}", file=sys.stderr)
                return 2
            print(f"fastreg demo: report written to {report} ({time.perf_counter() - start:.0f} s)")
        elif args.command == "experiment":
            return run_experiments(args)
        elif args.command in EVALUATION_COMMANDS:
            return EVALUATION_COMMANDS[args.command](args)
        elif args.command == "train":
            from .train.trainer import train

            if args.resume:
                from .train.trainer import resume

                if args.config:
                    raise ConfigError(f"config: --config {args.config} cannot be combined with --resume: a resumed "
                                      f"run keeps its checkpoint's config; give the fields to change as flags "
                                      f"(README, 'Resume')")
                resume(args.resume, overrides=config_overrides(args))
            else:
                train(config_from_args(args))
    except ConfigError as exc:
        print(f"fastreg {args.command}: invalid config: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, CheckpointError, DamagedFileError, UnsafeFileError) as exc:
        # a missing --config/--resume path, an unusable checkpoint or weights file
        print(f"fastreg {args.command}: {exc}", file=sys.stderr)
        return 2
    except NonFiniteError as exc:
        print(f"fastreg {args.command}: stopped (--on-nonfinite stop): {exc}. Diagnostics: {exc.diagnostics}. "
              f"Last good checkpoint: {exc.checkpoint or 'none written yet'}", file=sys.stderr)
        return 3
    except ValueError as exc:
        if args.command not in (*EVALUATION_COMMANDS, "experiment"):
            raise
        print(f"fastreg {args.command}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.filename is None:  # not about a path the user gave
            raise
        print(f"fastreg {args.command}: cannot use {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


def config_overrides(args: argparse.Namespace) -> dict:
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}


# --- fid and diagnose -------------------------------------------------------------------------------

def _add_evaluation_commands(commands) -> None:
    from .metrics.extractors import INCEPTION_ENV, SPEC_HELP

    extractor_help = (f"FID/KID features: {SPEC_HELP}; Inception only from a local weights file "
                      f"(inception:<file> or ${INCEPTION_ENV}), never downloaded")
    _add_fid_command(commands, extractor_help)
    _add_diagnose_command(commands)


def _add_fid_command(commands, extractor_help: str) -> None:
    fid = commands.add_parser(
        "fid", help="FID/KID (named by extractor) between runs, image folders and datasets",
        description="One RUN_DIR: its generator against its training data (toy runs: W1 and modes). "
                    "Two sources: FID/KID between them; a source is a run folder, a folder of images "
                    "or data:<dataset>.")
    fid.add_argument("sources", nargs="*", metavar="SOURCE",
                     help="a run folder (newest checkpoint, EMA generator), a folder of images, or data:<dataset>")
    fid.add_argument("--extractor", default="auto", help=extractor_help + " (default: %(default)s)")
    fid.add_argument("--samples", type=int, default=1000, help="generated samples per run (default: %(default)s)")
    fid.add_argument("--seed", type=int, default=None,
                     help="latent seed (default: the run's seed, which reproduces its logged evaluations; 0 for "
                          "two sources)")
    fid.add_argument("--floor", action="store_true",
                     help="also score two disjoint halves of the real data against each other")
    fid.add_argument("--data", default="digits", help="dataset of --floor when no run is given (default: %(default)s)")
    fid.add_argument("--resolution", type=int, default=None,
                     help="resolution of data:<name> sources and of --floor without a run (default: the run's, "
                          "else 32)")
    fid.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    fid.add_argument("--device", default=None, help="cpu, cuda, ... (default: the run's)")


def run_fid(args: argparse.Namespace) -> int:
    if len(args.sources) > 2:
        print("fastreg fid: sources: give one run, or two sources to compare", file=sys.stderr)
        return 2
    if not args.sources and not args.floor:
        print("fastreg fid: sources: give a RUN_DIR, two sources, or --floor with --data/--resolution",
              file=sys.stderr)
        return 2
    if args.json:
        check_writable_file(args.json, "--json")  # before minutes of computing, not after
    results = fid_between(args) if len(args.sources) == 2 else fid_against_data(args)
    if args.json:
        import json

        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


def check_writable_file(path: str, option: str) -> None:
    """ValueError naming ``option`` unless ``path`` can be written (tried: opened for appending; a file
    that did not exist is removed again)."""
    if os.path.isdir(path):
        raise ValueError(f"{option}: {path} is a folder; give a file name")
    existed = os.path.exists(path)
    try:
        with open(path, "a"):
            pass
    except OSError as exc:
        raise ValueError(f"{option}: cannot write {path} ({exc.strerror or exc})") from None
    if not existed:
        os.remove(path)


def fid_between(args: argparse.Namespace) -> dict:
    """FID/KID between two sources (fastreg.metrics.sources)."""
    from .metrics.evaluation import describe
    from .metrics.sources import compare, open_source

    seed = 0 if args.seed is None else args.seed
    opened = {}
    for spec in sorted(args.sources, key=lambda spec: spec.startswith("data:")):  # runs first: their resolution
        run_resolution = next((s.resolution for s in opened.values() if s.kind == "run"), None)
        opened[spec] = open_source(spec, args.samples, seed, args.device, args.resolution or run_resolution)
    a, b = (opened[spec] for spec in args.sources)
    result = compare(a, b, args.extractor, args.samples, args.device or "cpu", seed)
    print(f"{a.label} ({result['samples_a']}) vs {b.label} ({result['samples_b']}): {describe(result)}")
    return {f"{args.sources[0]} vs {args.sources[1]}": result}


def fid_against_data(args: argparse.Namespace) -> dict:
    """A run's generator against its training data, and/or the real-data floor."""
    from .metrics.evaluation import Evaluator, describe
    from .metrics.sources import is_run

    results, evaluators = {}, {}
    for run in args.sources:
        if not is_run(run):
            raise ValueError(f"sources: {run!r} is not a run folder (no config.yaml); to compare image folders "
                             f"or data:<dataset>, give two sources")
        from .train.trainer import load_trainer

        trainer = load_trainer(run, overrides={"device": args.device} if args.device else None)
        c = trainer.config
        evaluator = Evaluator(trainer.real.dataset, c.data, c.z_dim, args.samples, args.extractor, trainer.device,
                              seed=c.seed if args.seed is None else args.seed, root=c.data_root)
        evaluators.setdefault(c.data, evaluator)
        result = evaluator(lambda z, t=trainer: t.sample(z.to(t.device, t.dtype)))
        results[run] = {"step": trainer.step, "samples": args.samples, **_provenance(evaluator), **result}
        print(f"{run} (step {trainer.step}; {args.samples} generated): {describe(result)}")
    if args.floor:
        if not evaluators:
            from . import data

            dataset = data.get_dataset(args.data, resolution=args.resolution or 32)
            evaluators[args.data] = Evaluator(dataset, args.data, 1, args.samples, args.extractor, args.device or "cpu",
                                              seed=args.seed or 0)
        for name, evaluator in evaluators.items():
            if evaluator.extractor is None:  # toy runs: no features, no floor
                continue
            floor = evaluator.real_floor()
            half = len(evaluator.real_features) // 2
            results[f"real-data floor: {name}"] = {"samples": half, **_provenance(evaluator), **floor}
            print(f"real-data floor, {name} ({half} vs {half} real): {describe(floor)}")
    return results


def _provenance(evaluator) -> dict:
    extractor = evaluator.extractor
    return {"extractor": extractor.name if extractor else None, "resolution": getattr(extractor, "resolution", None),
            "real_samples": len(evaluator.real_features) if extractor else None}


def run_diagnose(args: argparse.Namespace) -> int:
    """``fastreg diagnose <diagnostic> ...``: one diagnostic (PNG + JSON) or ``all`` (the report)."""
    from .diagnostics import DiagnoseOptions, diagnose
    from .diagnostics import commands

    runs = {"RUN_A": args.run_a, "RUN_B": args.run_b} if args.diagnostic == "cross-test" else {"RUN_DIR": args.run}
    if getattr(args, "other", None) is not None:
        runs["--other"] = args.other
    for name, run in runs.items():
        if not os.path.isdir(run):
            print(f"fastreg diagnose {args.diagnostic}: {name}: no run folder {run!r}", file=sys.stderr)
            return 2
    out, device = getattr(args, "out", None), getattr(args, "device", None)
    for name, least in DIAGNOSE_MINIMUMS.items():
        value = getattr(args, name, least)
        if value < least:
            print(f"fastreg diagnose {args.diagnostic}: {_flag(name)}: must be at least {least}, got {value}",
                  file=sys.stderr)
            return 2
    noise = getattr(args, "noise", 0.0)
    if not (math.isfinite(noise) and noise >= 0):
        print(f"fastreg diagnose {args.diagnostic}: noise: must be a finite number >= 0, got {noise}", file=sys.stderr)
        return 2
    if out is not None:  # before minutes of diagnostics, not after
        from .train.run_lock import prepare_run_folder

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


EVALUATION_COMMANDS = {"fid": run_fid, "diagnose": run_diagnose}
DIAGNOSE_MINIMUMS = {"samples": 1, "cross_samples": 1, "d_steps": 1, "record_every": 1, "pairs": 1, "k": 0}


# --- the diagnose parser ---------------------------------------------------------------------------

DIAGNOSTICS = ("histograms", "interpolation", "vanishing", "cross-test", "all")


class _DiagnoseParser(argparse.ArgumentParser):
    """``fastreg diagnose RUN_DIR ...`` (no diagnostic named, an existing folder first) means ``all``."""

    def parse_known_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        if args and args[0] not in DIAGNOSTICS and not args[0].startswith("-") and os.path.isdir(args[0]):
            args.insert(0, "all")
        return super().parse_known_args(args, namespace)


def _add_diagnose_command(commands) -> None:
    from .metrics.extractors import INCEPTION_ENV, SPEC_HELP

    formatter = OneDefaultHelpFormatter
    diagnose = commands.add_parser(
        "diagnose", formatter_class=formatter,
        help="D histograms, interpolation profile, vanishing gradients, cross-test",
        description="The diagnostics of docs/design.md section 7 on trained runs (their newest checkpoint). Each "
                    "diagnostic writes <name>.png and <name>.json into --out; 'all' writes one report. "
                    "'fastreg diagnose RUN_DIR ...' is 'fastreg diagnose all RUN_DIR ...'.")
    diagnose.__class__ = _DiagnoseParser  # adds only the parse_known_args above; no state of its own
    diagnostics = diagnose.add_subparsers(dest="diagnostic", required=True, metavar="DIAGNOSTIC",
                                          parser_class=argparse.ArgumentParser)

    def add(name: str, help_text: str, runs=("run",)) -> argparse.ArgumentParser:
        p = diagnostics.add_parser(name, help=help_text, description=help_text, formatter_class=formatter)
        for dest in runs:
            p.add_argument(dest, metavar={"run": "RUN_DIR", "run_a": "RUN_A", "run_b": "RUN_B"}[dest])
        p.add_argument("--out", default=argparse.SUPPRESS,
                       help=f"output folder (default: {'RUN_A' if len(runs) > 1 else 'RUN_DIR'}/diagnostics)")
        p.add_argument("--seed", type=int, default=0, help="seed of latents, real draws and the fresh D")
        p.add_argument("--device", default=argparse.SUPPRESS, help="cpu, cuda, ... (default: the run's)")
        return p

    p = add("histograms", "D-output histograms on real and fake samples with their overlap coefficient "
                          "(Grewal et al. 2018, figs. 1-2)")
    p.add_argument("--fixed-g", action="store_true", help="also train a fresh D against the frozen G")
    p.add_argument("--d-steps", type=int, default=500, help="D steps of the fresh D (--fixed-g)")
    p.add_argument("--variant", default=argparse.SUPPRESS,
                   help="D loss of the extra and the fresh D's steps: gan, ns, lsgan, wgan, wgan-gp, bgan, "
                        "fgan:<div> (default: the run's variant)")
    p.add_argument("--k", type=int, default=50, help="extra D steps of the run's D (the k:1 picture; 0: none)")
    p.add_argument("--samples", type=int, default=1000, help="real and generated samples per histogram")
    p = add("interpolation", "mean D logit and mean ||grad_x D|| along t x_real + (1 - t) G(z), "
                             "t in [-0.5, 1.5] (Grewal et al. 2018, fig. 3)")
    p.add_argument("--pairs", type=int, default=64, help="real-fake pairs")
    p = add("vanishing", "G's gradient norms under a fresh D trained against the frozen G, log scale "
                         "(Arjovsky & Bottou 2017, Thm 2.4/2.6)")
    p.add_argument("--d-steps", type=int, default=500, help="D steps of the fresh D")
    p.add_argument("--record-every", type=int, default=25, help="record interval (D steps)")
    p.add_argument("--noise", type=float, default=0.0,
                   help="> 0: also a run with instance noise of this sigma on D's inputs, on the same plot")
    p.add_argument("--all-checkpoints", action="store_true", help="G of every kept checkpoint, not only the newest")
    p = add("cross-test", "Roth et al. 2017's cross-test of two runs on the same data: confusion matrices and "
                          "cross false-positive rates", runs=("run_a", "run_b"))
    p.add_argument("--samples", type=int, default=10_000, help="generated samples per model")
    p = add("all", "every diagnostic, FID/KID or toy metrics, as one report (report.md, diagnostics.json)")
    p.add_argument("--other", metavar="RUN_DIR", default=argparse.SUPPRESS,
                   help="a second run on the same data: Roth's cross-test")
    p.add_argument("--k", type=int, default=50, help="extra D steps of the k:1 histogram")
    p.add_argument("--d-steps", type=int, default=500, help="D steps of the fresh D")
    p.add_argument("--record-every", type=int, default=25, help="vanishing-gradient record interval")
    p.add_argument("--noise", type=float, default=0.0, help="> 0: vanishing gradients also with instance noise")
    p.add_argument("--samples", type=int, default=1000, help="samples per histogram side and for FID/KID")
    p.add_argument("--cross-samples", type=int, default=10_000, help="generated samples per model (cross-test)")
    p.add_argument("--all-checkpoints", action="store_true",
                   help="vanishing gradients for every kept checkpoint, not only the newest")
    p.add_argument("--extractor", default="auto",
                   help=f"FID/KID features: {SPEC_HELP}; Inception only from a local weights file "
                        f"(inception:<file> or ${INCEPTION_ENV}), never downloaded")


# --- experiment -------------------------------------------------------------------------------------

def _add_experiment_command(commands) -> None:
    from .experiments import EXPERIMENTS, SCALES

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
    p.add_argument("--data", default="digits", help="image dataset of the image experiments (roth-toy: a toy set)")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="seeds (multi-seed experiments use all, the others the first; default: the scale's)")
    p.add_argument("--threads", type=int, default=1,
                   help="intra-op CPU threads (small models on a shared CPU run fastest on one)")


def run_experiments(args: argparse.Namespace) -> int:
    from . import data
    from .experiments import SCALES, check_name, run_all, run_experiment

    try:
        check_name(args.name)
    except ValueError as exc:
        print(f"fastreg experiment: {exc}", file=sys.stderr)
        return 2
    if args.data not in data.available():
        print(f"fastreg experiment: data: unknown dataset {args.data!r}; expected one of "
              f"{', '.join(data.available())}", file=sys.stderr)
        return 2
    scale = SCALES[args.scale or "full"].with_seeds(args.seeds)
    if args.threads < 1:
        print(f"fastreg experiment: threads: must be at least 1, got {args.threads}", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    if args.name == "all":
        reports, path = run_all(args.out, scale, args.data)
    else:
        reports = [run_experiment(args.name, args.out, scale, args.data)]
        path = f"{reports[0].out}/report.md"
    for r in reports:
        verdicts = ", ".join(c.held for c in r.claims)
        print(f"{r.name}: {verdicts}")
    print(f"fastreg experiment: report written to {path} ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
