"""Option helpers the subcommands share: the help formatter, the config-field options, the device,
seed and output options, the extractor help and the checks of option values."""

from __future__ import annotations

import argparse
import dataclasses
import os
import typing

from ..train.config import TrainConfig


class OneDefaultHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: X)`` only where the help does not state its default itself and there is one to show
    (not None, not a suppressed or an off switch's False), so no option's help shows two defaults."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or action.default in (None, argparse.SUPPRESS, False):
            return text
        return super()._get_help_string(action)


class CommandParser(argparse.ArgumentParser):
    """A subcommand's parser; ``rewrite`` (arguments -> arguments) runs before parsing, e.g. to name an
    implicit sub-subcommand."""

    def __init__(self, *args, rewrite=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.rewrite = rewrite

    def parse_known_args(self, args=None, namespace=None):
        if self.rewrite is not None and args is not None:
            args = self.rewrite(list(args))
        return super().parse_known_args(args, namespace)


def flag(name: str) -> str:
    """``--d-steps`` for the field or destination ``d_steps``."""
    return "--" + name.replace("_", "-")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
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
            parser.add_argument(flag(f.name), action=argparse.BooleanOptionalAction, **kwargs)
        elif typing.get_origin(base) is tuple:
            parser.add_argument(flag(f.name), type=float, nargs=2, metavar=("B1", "B2"), **kwargs)
        else:
            parser.add_argument(flag(f.name), type=base, **kwargs)


def config_fields(args: argparse.Namespace) -> dict:
    """The TrainConfig fields given on the command line."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}


def add_device_option(parser: argparse.ArgumentParser, default=None) -> None:
    parser.add_argument("--device", default=default, help="cpu, cuda, ... (default: the run's)")


DEFAULT_THREADS = 1


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    """``--threads N``: torch's intra-op CPU threads, default 1. fastreg's models are small, and on a CPU shared
    with other processes torch's default (one thread per core) loses most of its speed to contention (measured on
    2 cores beside one busy process: 150 steps at 1.3 steps/s on 2 threads, 10.1 on 1)."""
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help="intra-op CPU threads per process (default: %(default)s, the fastest for fastreg's "
                             "small models on a shared CPU; more can help on an idle machine with large models)")


def apply_threads(args: argparse.Namespace) -> str | None:
    """``torch.set_num_threads(args.threads)`` when the command has ``--threads``; the error text when it is
    below 1 (the caller exits with status 2), else None."""
    threads = getattr(args, "threads", None)
    if threads is None:
        return None
    if threads < 1:
        return f"--threads: must be at least 1, got {threads}"
    import torch

    torch.set_num_threads(threads)
    return None


def add_download_option(parser: argparse.ArgumentParser) -> None:
    """``--download``: let torchvision fetch a missing mnist/fashion-mnist/cifar10 into the data root."""
    parser.add_argument("--download", action="store_true",
                        help="download mnist, fashion-mnist or cifar10 into the data root when it is missing "
                             "(torchvision's download=True; the only step that uses the network)")


def extractor_help() -> str:
    from ..metrics.extractors import INCEPTION_ENV, SPEC_HELP

    return (f"FID/KID features: {SPEC_HELP}; torchvision's Inception only from a local weights file "
            f"(inception:<file> or ${INCEPTION_ENV}), never downloaded; pytorch-fid-inception (FIDs comparable with "
            "papers') from pytorch-fid's cache, downloaded there when missing, or from a local file")


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
