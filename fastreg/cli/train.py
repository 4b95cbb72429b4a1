"""``fastreg train``: a new run from defaults < ``--config`` YAML < flags, or ``--resume RUN_DIR``."""

from __future__ import annotations

import argparse

from ..train.config import ConfigError, TrainConfig, from_dict, load_yaml, to_dict
from .options import (OneDefaultHelpFormatter, add_config_arguments, add_download_option, add_threads_option,
                      config_fields)


def add(commands) -> None:
    p = commands.add_parser("train", help="train a GAN variant", formatter_class=OneDefaultHelpFormatter)
    p.add_argument("--config", help="YAML file of config fields, or a preset's name ("
                   + ", ".join(presets()) + "); flags given here override it")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    add_threads_option(p)
    add_download_option(p)
    add_config_arguments(p)
    p.set_defaults(handler=run)


def presets() -> dict[str, str]:
    """The bundled presets of the papers' settings: name -> YAML file (``fastreg/configs/<name>.yaml``)."""
    import os

    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
    names = sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".yaml")) if os.path.isdir(folder) else []
    return {name: os.path.join(folder, f"{name}.yaml") for name in names}


def config_path(config: str) -> str:
    """``--config``: a YAML file, else a preset's name (a file of that name wins)."""
    import os

    return presets().get(config, config) if not os.path.exists(config) else config


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """defaults < --config YAML (a file or a preset) < flags; then validated."""
    base = load_yaml(config_path(args.config)) if args.config else TrainConfig()
    overrides = config_fields(args)
    if "betas" in overrides:
        overrides["betas"] = tuple(overrides["betas"])
    return from_dict({**to_dict(base), **overrides}).validate()


def run(args: argparse.Namespace) -> int:
    from ..train.trainer import resume, train

    if args.resume:
        if args.config:
            raise ConfigError(f"config: --config {args.config} cannot be combined with --resume: a resumed "
                              f"run keeps its checkpoint's config; give the fields to change as flags "
                              f"(README, 'Resume')")
        resume(args.resume, overrides=config_fields(args))
    else:
        config = config_from_args(args)
        if args.download:
            download(config.data, config.data_root, config.resolution)
        train(config)
    return 0


def download(name: str, root: str | None, resolution: int | None = None) -> None:
    """``--download``: fetch ``name`` into ``root`` (torchvision's ``download=True``) before anything trains;
    datasets that need no download (toy mixtures, digits) are left alone."""
    from .. import data

    if name in data.TOY or name == "digits":
        return
    try:
        data.get_dataset(name, resolution=resolution, root=root, download=True)
    except (RuntimeError, OSError) as exc:  # no network, a refused or broken download
        raise ConfigError(f"download: could not download {name!r} into {root or data.vision.default_root()}: "
                          f"{exc}") from None
