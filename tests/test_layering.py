"""The import layering of docs/design.md: the lower layers (ops, models, data, metrics and the library modules
beside them) never import the trainer or the CLI."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "fastreg"
LOWER = ("ops", "models", "data", "metrics")
UPPER = ("fastreg.train", "fastreg.cli", "fastreg.experiments", "fastreg.diagnostics", "fastreg.demo")


def imported_modules(source: str, package: str) -> set[str]:
    """Absolute names of the modules ``source`` imports (relative imports resolved against ``package``)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - (node.level - 1)] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("layer", LOWER)
def test_lower_layers_do_not_import_the_trainer_or_the_cli(layer):
    files = sorted((PACKAGE / layer).rglob("*.py"))
    assert files, layer
    offending = {}
    for f in files:
        package = ".".join(f.relative_to(PACKAGE.parent).parts[:-1])
        offending[str(f.relative_to(PACKAGE))] = sorted(n for n in imported_modules(f.read_text(), package)
                                                        if n.startswith(UPPER))
    assert not {f: names for f, names in offending.items() if names}


def test_the_resolver_sees_an_upward_import():
    """The check can fail: relative and absolute imports of the trainer from a metrics module are seen."""
    seen = imported_modules("from ..train.runs import open_run\nfrom . import fid\nimport fastreg.cli\n",
                            "fastreg.metrics")
    assert {"fastreg.train.runs", "fastreg.metrics.fid", "fastreg.cli"} <= seen
    assert any(n.startswith(UPPER) for n in seen)
