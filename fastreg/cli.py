"""The `fastreg` command line (also `python -m fastreg`).

    fastreg train --variant ns --reg roth --gamma 2.0 --gamma-anneal 0.01 --data digits --steps 3000 --out runs/x
    fastreg train --config run.yaml --steps 100     # YAML, then flags on top
    fastreg train --resume runs/x                   # continue a run from its last checkpoint
    torchrun --nproc_per_node=2 -m fastreg train ... # data-parallel on 2 processes (gloo on CPU, NCCL on GPU)

Exit status: 0 done, 2 bad input (config, data, paths, checkpoint), 3 stopped on a non-finite value.
    fastreg fid runs/x --floor                      # FID/KID vs its data, named by extractor (toy: W1, modes)
    fastreg fid runs/x runs/y                       # between two runs, image folders or data:<name>
    fastreg diagnose runs/x --other runs/y          # histograms, interpolation, vanishing gradients, cross-test
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import typing

from .train.checkpoint import CheckpointError
from .train.config import ConfigError, TrainConfig, from_dict, load_yaml, to_dict
from .train.nonfinite import NonFiniteError


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per TrainConfig field; defaults shown in the help, not injected into the namespace."""
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        hint = hints[f.name]
        help_text = f"{f.metadata.get('help', '')} (default: {f.default})"
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
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = commands.add_parser("train", help="train a GAN variant",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    train.add_argument("--config", help="YAML file of config fields; flags given here override it")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    _add_config_arguments(train)
    demo = commands.add_parser("demo", help="unregularized vs Roth-regularized NS-GAN on digits and a 3-D toy",
                               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    demo.add_argument("--out", default="runs/demo", help="folder of the demo's runs and report")
    demo.add_argument("--quick", action="store_true", help="a few steps of each run (a smoke test)")
    _add_evaluation_commands(commands)
    return parser


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
            from .demo import QUICK, DemoBudget, run_demo

            start = time.perf_counter()
            report = run_demo(args.out, QUICK if args.quick else DemoBudget())
            print(f"fastreg demo: report written to {report} ({time.perf_counter() - start:.0f} s)")
        elif args.command in EVALUATION_COMMANDS:
            return EVALUATION_COMMANDS[args.command](args)
        elif args.command == "train":
            from .train.trainer import train

            if args.resume:
                from .train.trainer import resume

                resume(args.resume, overrides=config_overrides(args))
            else:
                train(config_from_args(args))
    except ConfigError as exc:
        print(f"fastreg {args.command}: invalid config: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, CheckpointError) as exc:  # a missing --config/--resume path, an unusable checkpoint
        print(f"fastreg {args.command}: {exc}", file=sys.stderr)
        return 2
    except NonFiniteError as exc:
        print(f"fastreg {args.command}: stopped (--on-nonfinite stop): {exc}. Diagnostics: {exc.diagnostics}. "
              f"Last good checkpoint: {exc.checkpoint or 'none written yet'}", file=sys.stderr)
        return 3
    except ValueError as exc:
        if args.command not in EVALUATION_COMMANDS:
            raise
        print(f"fastreg {args.command}: {exc}", file=sys.stderr)
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
    diagnose = commands.add_parser("diagnose", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                   help="D histograms, interpolation profile, vanishing gradients, cross-test")
    diagnose.add_argument("run", metavar="RUN_DIR")
    diagnose.add_argument("--other", metavar="RUN_DIR", default=argparse.SUPPRESS,
                          help="a second run on the same data: Roth's cross-test")
    diagnose.add_argument("--out", default=argparse.SUPPRESS, help="report folder (default: RUN_DIR/diagnostics)")
    diagnose.add_argument("--k", type=int, default=50, help="extra D steps of the k:1 histogram")
    diagnose.add_argument("--d-steps", type=int, default=500, help="D steps of the fresh D")
    diagnose.add_argument("--record-every", type=int, default=25, help="vanishing-gradient record interval")
    diagnose.add_argument("--samples", type=int, default=1000, help="samples per histogram side and for FID/KID")
    diagnose.add_argument("--cross-samples", type=int, default=10_000, help="generated samples per model (cross-test)")
    diagnose.add_argument("--all-checkpoints", action="store_true",
                          help="vanishing gradients for every kept checkpoint, not only the newest")
    diagnose.add_argument("--extractor", default="auto", help=extractor_help)
    diagnose.add_argument("--seed", type=int, default=0, help="seed of latents, real draws and the fresh D")
    diagnose.add_argument("--device", default=argparse.SUPPRESS, help="cpu, cuda, ... (default: the run's)")


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
    results = fid_between(args) if len(args.sources) == 2 else fid_against_data(args)
    if args.json:
        import json

        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


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
        result = evaluator(lambda z: trainer.sample(z.to(trainer.device, trainer.dtype)))
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
    from .diagnostics import DiagnoseOptions, diagnose

    options = DiagnoseOptions(k=args.k, d_steps=args.d_steps, record_every=args.record_every, samples=args.samples,
                              cross_samples=args.cross_samples, all_checkpoints=args.all_checkpoints,
                              extractor=args.extractor, seed=args.seed)
    report = diagnose(args.run, getattr(args, "out", None), getattr(args, "other", None), options,
                      device=getattr(args, "device", None))
    print(f"fastreg diagnose: report written to {report}")
    return 0


EVALUATION_COMMANDS = {"fid": run_fid, "diagnose": run_diagnose}


if __name__ == "__main__":
    sys.exit(main())
