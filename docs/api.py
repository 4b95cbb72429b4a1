"""Writes docs/api.md, the API reference of fastreg's public library modules, from their docstrings.

    python docs/api.py          # rewrite docs/api.md
    python docs/api.py --check  # exit 1 when docs/api.md differs from what the docstrings give

A module's public names: its ``__all__``, else the functions and classes it defines whose names do not start with
an underscore. Each entry: the signature and the docstring's first paragraph (the full text: ``help(name)``).
tests/test_api_docs.py checks that the file is current and that every public name has a docstring.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout's fastreg
MODULES = ("fastreg.data", "fastreg.losses", "fastreg.regularizers", "fastreg.schedules", "fastreg.models",
           "fastreg.metrics", "fastreg.ops")
PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "api.md")


def public_names(module) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, obj in vars(module).items() if not n.startswith("_")
                 and (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == module.__name__]
    return sorted(n for n in names if not inspect.ismodule(getattr(module, n)))


def first_paragraph(obj) -> str:
    return " ".join((inspect.getdoc(obj) or "").strip().split("\n\n")[0].split())


def signature(obj) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return ""


def render() -> str:
    lines = ["# API reference", "", "Generated from the docstrings by `python docs/api.py` (do not edit by hand; "
             "`tests/test_api_docs.py` checks it is current). The library layers work in any PyTorch loop; the "
             "trainer, CLI, experiments and diagnostics are described in the README.", ""]
    for name in MODULES:
        module = importlib.import_module(name)
        lines += [f"## `{name}`", "", first_paragraph(module), ""]
        for member in public_names(module):
            obj = getattr(module, member)
            kind = "class" if inspect.isclass(obj) else "function" if callable(obj) else "value"
            head = f"`{member}{signature(obj) if kind != 'value' else ''}`"
            lines += [f"- {head} ({kind}): {first_paragraph(obj) if kind != 'value' else ''}".rstrip()]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        with open(PATH) as f:
            return 0 if f.read() == text else 1
    with open(PATH, "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
