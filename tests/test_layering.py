"""The import layering of docs/design.md: every module of the package belongs to one layer and imports only
from its own layer and the ones below. The library (ops, models, data, metrics, regularizers and the modules
beside them) never imports the trainer, the diagnostics, the experiments or the CLI; the trainer never imports
the diagnostics; and so on up to the CLI, the top."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "fastreg"
# Bottom to top. A module is in the layer of the longest prefix of its name listed here; "fastreg" names the
# package's own __init__ only, so a new top-level module must be given a layer.
LAYERS = (
    ("library", ("fastreg", "fastreg.ops", "fastreg.models", "fastreg.data", "fastreg.metrics", "fastreg.regularizers",
                 "fastreg.divergences", "fastreg.losses", "fastreg.schedules", "fastreg.torch_files", "fastreg.atomic",
                 "fastreg.progress", "fastreg.regularizer_table", "fastreg.penalty_gradient")),
    ("train", ("fastreg.train",)),
    ("diagnostics", ("fastreg.diagnostics",)),
    ("experiments", ("fastreg.experiments",)),
    ("cli", ("fastreg.cli", "fastreg.console", "fastreg.__main__")),
)


def layer_of(module: str) -> int | None:
    """The index in LAYERS of ``module`` (a dotted name), or None when no prefix of it is listed."""
    best, level = -1, None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            within = module == prefix or (prefix != "fastreg" and module.startswith(prefix + "."))
            if within and len(prefix) > best:
                best, level = len(prefix), index
    return level


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


def package_modules() -> dict[str, pathlib.Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    modules = {}
    for f in sorted(PACKAGE.rglob("*.py")):
        parts = f.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return modules


def test_every_module_of_the_package_has_a_layer():
    modules = package_modules()
    assert len(modules) > 80
    assert not [name for name in modules if layer_of(name) is None]


@pytest.mark.parametrize("layer", [name for name, _ in LAYERS])
def test_no_module_imports_a_layer_above_its_own(layer):
    level = [name for name, _ in LAYERS].index(layer)
    offending = {}
    for name, f in package_modules().items():
        if layer_of(name) != level:
            continue
        package = name if f.name == "__init__.py" else name.rpartition(".")[0]
        above = sorted(n for n in imported_modules(f.read_text(), package)
                       if layer_of(n) is not None and layer_of(n) > level)
        if above:
            offending[name] = above
    assert not offending


def test_the_resolver_sees_an_upward_import():
    """The check can fail: relative and absolute imports of the trainer from a metrics module are seen."""
    seen = imported_modules("from ..train.runs import open_run\nfrom . import fid\nimport fastreg.cli\n",
                            "fastreg.metrics")
    assert {"fastreg.train.runs", "fastreg.metrics.fid", "fastreg.cli"} <= seen
    assert layer_of("fastreg.metrics.fid") == 0 and layer_of("fastreg.train.runs") == 1
    assert layer_of("fastreg.cli") == len(LAYERS) - 1 and layer_of("fastreg.nowhere") is None
