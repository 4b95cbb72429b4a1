"""docs/api.md, the API reference generated from the docstrings by docs/api.py: current, and complete (every
public name of the library modules has a docstring)."""

import importlib.util
import inspect
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def generator():
    spec = importlib.util.spec_from_file_location("fastreg_api_docs", os.path.join(ROOT, "docs", "api.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_reference_is_current():
    api = generator()
    with open(api.PATH) as f:
        committed = f.read()
    assert committed == api.render(), "docs/api.md is stale: run python docs/api.py"
    assert "## `fastreg.regularizers`" in committed and "`endless(loader)` (function)" in committed


def test_every_public_name_has_a_docstring():
    api = generator()
    missing = []
    for name in api.MODULES:
        module = importlib.import_module(name)
        assert (inspect.getdoc(module) or "").strip(), name
        for member in api.public_names(module):
            obj = getattr(module, member)
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and not (inspect.getdoc(obj) or "").strip():
                missing.append(f"{name}.{member}")
    assert missing == []
