"""The `fastreg` command line (also `python -m fastreg`): one module per subcommand (train, demo, fid, diagnose,
experiment), each adding its parser with ``set_defaults(handler=run)``; shared options in :mod:`.options`.

    fastreg train --variant ns --reg roth --gamma 2.0 --gamma-anneal 0.01 --data digits --steps 3000 --out runs/x
    fastreg train --config run.yaml --steps 100     # YAML, then flags on top
    fastreg train --resume runs/x                   # continue a run from its last checkpoint
    torchrun --nproc_per_node=2 -m fastreg train ... # data-parallel on 2 processes (gloo on CPU, NCCL on GPU)

Exit status: 0 done, 2 bad input (config, data, paths, checkpoint) or a full disk, 3 stopped on a non-finite value.
    fastreg fid runs/x --floor                      # FID/KID vs its data, named by extractor (toy: W1, modes)
    fastreg fid runs/x runs/y                       # between two runs, image folders or data:<name>
    fastreg diagnose all runs/x --other runs/y      # histograms, interpolation, vanishing gradients, cross-test
    fastreg diagnose vanishing runs/x --noise 0.5   # one diagnostic: <name>.png and <name>.json
    fastreg experiment all --quick                  # every paper reproduction, small; runs/experiments/index.md
"""


from __future__ import annotations

import argparse
import sys

from ..atomic import DiskFullError
from ..torch_files import DamagedFileError, UnsafeFileError
from ..train.checkpoint import CheckpointError
from ..train.config import ConfigError
from ..train.nonfinite import NonFiniteError
from . import demo, diagnose, experiment, fid, train
from .options import CommandParser, apply_threads
from .train import config_from_args

__all__ = ["build_parser", "config_from_args", "main"]

SUBCOMMANDS = (train, demo, fid, diagnose, experiment)


class _VersionAction(argparse.Action):
    """``--version``: the line is built only when asked for (it queries torch.cuda)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from .. import __version__
        from ..ops.backend import describe
        print(f"fastreg {__version__} ({describe()})")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastreg", description="Stable, fast GAN training.")
    parser.add_argument("--version", action=_VersionAction,
                        help="print the version, the compiled kernels and the backend in use, and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=CommandParser)
    for module in SUBCOMMANDS:
        module.add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; its exit status (user errors: 2, a non-finite stop: 3)."""
    args = build_parser().parse_args(argv)
    problem = apply_threads(args)  # every command that trains or evaluates has --threads (default 1)
    if problem:
        print(f"fastreg {args.command}: {problem}", file=sys.stderr)
        return 2
    try:
        return args.handler(args)
    except ConfigError as exc:
        print(f"fastreg {args.command}: invalid config: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, CheckpointError, DamagedFileError, UnsafeFileError) as exc:
        # a missing --config/--resume path, an unusable checkpoint or weights file
        print(f"fastreg {args.command}: {exc}", file=sys.stderr)
        return 2
    except DiskFullError as exc:  # one line naming the file; the previous version of it is kept
        print(f"fastreg {args.command}: {exc}", file=sys.stderr)
        return 2
    except NonFiniteError as exc:
        print(f"fastreg {args.command}: stopped (--on-nonfinite stop): {exc}. Diagnostics: {exc.diagnostics}. "
              f"Last good checkpoint: {exc.checkpoint or 'none written yet'}", file=sys.stderr)
        return 3
    except ValueError as exc:
        if not getattr(args, "value_errors_are_user_errors", False):
            raise
        print(f"fastreg {args.command}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.filename is None:  # not about a path the user gave
            raise
        print(f"fastreg {args.command}: cannot use {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
