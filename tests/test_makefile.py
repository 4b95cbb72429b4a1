"""The Makefile rebuilds the extension only when its sources or build flags change.

Runs the real Makefile in a scratch folder whose ``.venv/bin/python`` is a stand-in that logs each
call, so a (re)build shows up as a logged ``pip install -e .`` without compiling anything.
"""

import os
import shutil
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")

FAKE_PYTHON = """#!/bin/sh
echo "FORCE=$FASTREG_FORCE_CUDA ARCH=${TORCH_CUDA_ARCH_LIST-unset} $*" >> "$(dirname "$0")/../../calls.log"
"""


@pytest.fixture
def tree(tmp_path):
    shutil.copy(os.path.join(ROOT, "Makefile"), tmp_path)
    shutil.copy(os.path.join(ROOT, "pyproject.toml"), tmp_path)
    (tmp_path / "setup.py").write_text("# stand-in\n")
    (tmp_path / "csrc" / "cpu").mkdir(parents=True)
    (tmp_path / "csrc" / "cpu" / "op.cpp").write_text("// stand-in\n")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text(FAKE_PYTHON)
    (bin_dir / "python").chmod(0o755)
    past = time.time() - 1000
    for path in ("Makefile", "pyproject.toml", "setup.py", "csrc/cpu/op.cpp"):
        os.utime(tmp_path / path, (past, past))
    (tmp_path / ".venv" / ".installed").touch()  # newer than Makefile and pyproject.toml: no venv step
    return tmp_path


def make(tree, *targets, **env):
    full_env = {k: v for k, v in os.environ.items() if k not in ("FASTREG_NO_EXT", "TORCH_CUDA_ARCH_LIST", "MAKEFLAGS")}
    full_env.update({"FASTREG_FORCE_CUDA": "0", **env})
    return subprocess.run(["make", "--no-print-directory", *targets], cwd=tree, env=full_env, capture_output=True,
                          text=True, timeout=60)


def calls(tree) -> list[str]:
    log = tree / "calls.log"
    lines = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return lines


def builds(lines) -> list[str]:
    return [line for line in lines if "pip install --quiet --no-build-isolation --no-deps -e ." in line]


def test_second_target_does_not_rebuild(tree):
    assert make(tree, "build").returncode == 0
    assert builds(calls(tree)) == ["FORCE=0 ARCH=unset -m pip install --quiet --no-build-isolation --no-deps -e ."]
    assert make(tree, "build").returncode == 0
    assert calls(tree) == []
    # make -q: the stamp is up to date, nothing to do.
    assert make(tree, "-q", "build/make-build.stamp").returncode == 0
    assert make(tree, "demo").returncode == 0
    lines = calls(tree)
    assert builds(lines) == [] and any("-m fastreg demo" in line for line in lines)
    assert make(tree, "pytest").returncode == 0
    lines = calls(tree)
    assert builds(lines) == [] and any("-m pytest tests" in line for line in lines)


def test_source_change_rebuilds_once(tree):
    assert make(tree, "build").returncode == 0
    calls(tree)
    (tree / "csrc" / "cpu" / "op.cpp").write_text("// changed\n")
    assert make(tree, "-q", "build/make-build.stamp").returncode == 1
    assert make(tree, "build").returncode == 0
    assert len(builds(calls(tree))) == 1
    assert make(tree, "build").returncode == 0
    assert calls(tree) == []


def test_flag_change_rebuilds_with_the_new_flags(tree):
    assert make(tree, "build").returncode == 0
    calls(tree)
    assert make(tree, "build", FASTREG_FORCE_CUDA="1").returncode == 0
    assert [line.split(" -m ")[0] for line in builds(calls(tree))] == ["FORCE=1 ARCH=unset"]
    assert make(tree, "build", FASTREG_FORCE_CUDA="1").returncode == 0
    assert calls(tree) == []
    assert make(tree, "build", FASTREG_FORCE_CUDA="1", TORCH_CUDA_ARCH_LIST="8.0;9.0+PTX").returncode == 0
    assert [line.split(" -m ")[0] for line in builds(calls(tree))] == ["FORCE=1 ARCH=8.0;9.0+PTX"]
    # Back to the first flags: that build's library was replaced, so it is built again.
    assert make(tree, "build").returncode == 0
    assert [line.split(" -m ")[0] for line in builds(calls(tree))] == ["FORCE=0 ARCH=unset"]


def test_failed_build_is_retried(tree):
    (tree / ".venv" / "bin" / "python").write_text("#!/bin/sh\nexit 1\n")
    assert make(tree, "build").returncode != 0
    assert not (tree / "build" / "make-build.stamp").exists()
