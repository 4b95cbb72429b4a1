"""The `fastreg` command line (also `python -m fastreg`).

    fastreg train --variant ns --reg roth --gamma 2.0 --gamma-anneal 0.01 --data digits --steps 3000 --out runs/x
    fastreg train --config run.yaml --steps 100     # YAML, then flags on top
    fastreg train --resume runs/x                   # continue a run from its last checkpoint
    torchrun --nproc_per_node=2 -m fastreg train ... # data-parallel on 2 processes (gloo on CPU, NCCL on GPU)

Exit status: 0 done, 2 bad input (config, data, paths, checkpoint), 3 stopped on a non-finite value.
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
    return 0


def config_overrides(args: argparse.Namespace) -> dict:
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}


if __name__ == "__main__":
    sys.exit(main())
