"""The ``fastreg`` console script (and ``python -m fastreg``).

The core package needs torch only; the command line also needs what ``fastreg[train]`` installs
(pyproject.toml). When one of those is missing the command says so in one line and exits 2,
instead of an ImportError traceback from deep inside a subcommand.
"""

from __future__ import annotations

import sys

# Top-level modules of the packages fastreg[train] brings (pyproject.toml).
TRAIN_EXTRA_MODULES = ("numpy", "scipy", "sklearn", "matplotlib", "yaml", "tqdm", "torchvision", "PIL")


def missing_train_extra(exc: ModuleNotFoundError) -> str | None:
    """The missing top-level module when ``exc`` is one of fastreg[train]'s, else None."""
    top = (exc.name or "").split(".")[0]
    return top if top in TRAIN_EXTRA_MODULES else None


def main(argv: list[str] | None = None) -> int:
    try:
        from .cli import main as cli_main
        return cli_main(argv)
    except ModuleNotFoundError as exc:
        missing = missing_train_extra(exc)
        if missing is None:
            raise
        print(f"fastreg: the command line needs the packages of fastreg[train] (module {missing!r} is missing): "
              "pip install 'fastreg[train]'", file=sys.stderr)
        return 2
