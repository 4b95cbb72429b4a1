"""Packaging: what `pip install .` gives a user who is not in this checkout (docs/design.md section 10).

The fast tests check the declarations and the messages; the slow ones (marked ``slow``) build an sdist
of a copy of the checkout, wheels from that sdist (CPU kernels; pure Python), install them into fresh
virtual environments that see this interpreter's torch through a .pth file (no network, no
dependency resolution), and run them from outside the source tree.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile

import pytest
import torch

import fastreg
from fastreg import backend

try:
    import tomllib
except ImportError:  # Python 3.10
    from pip._vendor import tomli as tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Copying the checkout leaves these out: build outputs, environments, runs, VCS data.
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "runs", "__pycache__", "*.so", "*.o",
                                     "*.egg-info", ".pytest_cache", ".benchmarks", ".whl")
TRAIN_EXTRA_IMPORTS = ("numpy", "scipy", "sklearn", "matplotlib", "yaml", "tqdm", "torchvision", "PIL")
# Blocks the given top-level modules in a child interpreter, as if they were not installed.
BLOCKER = """
import importlib.abc, sys
BLOCKED = set({blocked!r})
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Block())
"""


def clean_env(**extra) -> dict:
    """The environment of a child process that must not see this checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FASTREG_BACKEND", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", **extra)
    return env


def source_modules() -> list[str]:
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "fastreg", "**", "*.py"),
                                                               recursive=True))


def pyproject() -> dict:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


# ---------------------------------------------------------------------------------------------
# Declarations and messages (fast)


def test_every_source_folder_is_a_regular_package():
    # find_packages skips a folder without __init__.py, so its modules would be missing from a wheel.
    folders = {os.path.dirname(p) for p in source_modules()}
    missing = sorted(d for d in folders if not os.path.isfile(os.path.join(ROOT, d, "__init__.py")))
    assert missing == []
    find = pyproject()["tool"]["setuptools"]["packages"]["find"]
    assert find["include"] == ["fastreg*"] and find["namespaces"] is False


def test_one_version_source():
    project = pyproject()["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert pyproject()["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "fastreg.__version__"}
    assert fastreg.__version__.count(".") == 2


def test_dependencies_declared():
    project = pyproject()["project"]
    assert project["dependencies"] == ["torch>=2.4"]
    names = {r.split(">")[0].split("=")[0].split("[")[0].lower() for r in project["optional-dependencies"]["train"]}
    assert names == {"numpy", "scipy", "scikit-learn", "matplotlib", "pyyaml", "tqdm", "torchvision", "pillow"}
    test_names = " ".join(project["optional-dependencies"]["test"])
    for tool in ("pytest", "pytest-benchmark", "ruff", "clang-format", "hypothesis", "expecttest"):
        assert tool in test_names
    # The extension must be compiled against the torch that runs it, so it is not a build requirement.
    assert not any(r.startswith("torch") for r in pyproject()["build-system"]["requires"])


def test_core_package_runs_with_torch_only():
    code = BLOCKER.format(blocked=TRAIN_EXTRA_IMPORTS) + (
        "import torch, fastreg\n"
        "import fastreg.losses, fastreg.regularizers, fastreg.schedules, fastreg.models, fastreg.data\n"
        "g = torch.tensor([[3.0, 4.0], [0.0, 1.0]])\n"
        "print(float(fastreg.grad_penalty(g)))\n")
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True,
                         env=clean_env(PYTHONPATH=ROOT), cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) == pytest.approx((25.0 + 1.0) / 2)


def test_command_line_without_train_extra_names_it(tmp_path):
    code = BLOCKER.format(blocked=("yaml", "tqdm")) + (
        "import sys\nfrom fastreg.console import main\nsys.exit(main(['train', '--steps', '1']))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=clean_env(PYTHONPATH=ROOT), cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert "pip install 'fastreg[train]'" in out.stderr and ("'yaml'" in out.stderr or "'tqdm'" in out.stderr)


def test_version_flag():
    out = subprocess.run([sys.executable, "-m", "fastreg", "--version"], capture_output=True, text=True,
                         env=clean_env(PYTHONPATH=ROOT), cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"fastreg {fastreg.__version__} (backend ")
    assert f"torch {torch.__version__}" in out.stdout


def run_setup(env: dict, *command: str, cwd=ROOT) -> subprocess.CompletedProcess:
    """setup.py as pip's build steps run it (it decides about the extension before setup())."""
    return subprocess.run([sys.executable, "setup.py", *(command or ("--name",))], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def hide_torch(tmp_path) -> str:
    """A folder that, first on PYTHONPATH, makes `import torch` fail as if torch were not installed."""
    fake = tmp_path / "no_torch" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n")
    return str(fake.parent)


def test_setup_without_torch_says_install_torch_first(tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(ROOT, tree, ignore=COPY_IGNORE)
    env = clean_env(PYTHONPATH=hide_torch(tmp_path))
    # Metadata needs no torch ...
    meta = run_setup(env, "--name", cwd=tree)
    assert meta.returncode == 0 and meta.stdout.strip().splitlines()[-1] == "fastreg", meta.stderr
    # ... compiling does, and says so in one line instead of a traceback.
    out = run_setup(env, "build_ext", cwd=tree)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "Install torch first" in lines[0] and "torch==2.14.1" in lines[0] and "--no-build-isolation" in lines[0]


def test_setup_refuses_forced_cuda_without_toolkit(tmp_path):
    env = clean_env(PATH=str(tmp_path), FASTREG_FORCE_CUDA="1")
    env.pop("CUDA_HOME", None)
    env.pop("CUDA_PATH", None)
    out = run_setup(env)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "FASTREG_FORCE_CUDA=1 but no CUDA toolkit was found" in out.stderr


def test_setup_refuses_unknown_force_cuda_value():
    out = run_setup(clean_env(FASTREG_FORCE_CUDA="maybe"))
    assert out.returncode != 0 and "FASTREG_FORCE_CUDA must be 1" in out.stderr and "'maybe'" in out.stderr


def test_pure_python_tree_starts_on_reference_and_says_why(tmp_path):
    # The package without its compiled library, as a FASTREG_NO_EXT=1 install lays it out.
    shutil.copytree(os.path.join(ROOT, "fastreg"), tmp_path / "fastreg", ignore=COPY_IGNORE)
    code = ("import json, torch, fastreg\n"
            "g = torch.tensor([[3.0, 4.0], [0.0, 1.0]], dtype=torch.float64)\n"
            "info = fastreg.backend_info()\n"
            "info['value'] = float(fastreg.grad_penalty(g))\n"
            "print(json.dumps(info))\n")
    out = subprocess.run([sys.executable, "-W", "error::UserWarning", "-c", code], capture_output=True, text=True,
                         env=clean_env(PYTHONPATH=str(tmp_path)), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["backend"] == "reference" and info["extension_built"] is False and info["extension"] is False
    assert info["load_error"] is None and "circular" not in out.stdout
    assert "pure-Python build" in info["note"]
    assert info["value"] == pytest.approx(13.0)


def test_cuda_compiled_but_not_usable_is_said(monkeypatch):
    class FakeLibrary:
        with_cuda = 1
        cuda_archs = "9.0"

    monkeypatch.setattr(backend, "_C", FakeLibrary)
    monkeypatch.setattr(backend, "_BUILT", True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    info = fastreg.backend_info()
    assert (info["cuda_compiled"], info["cuda_usable"], info["cuda_archs"]) == (True, False, "9.0")
    assert "not usable here: no GPU visible" in info["note"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert fastreg.backend_info()["cuda_usable"] is True
    assert "cuda" not in fastreg.backend_info()  # the ambiguous key is gone


# ---------------------------------------------------------------------------------------------
# sdist, wheels and fresh environments (slow: the wheel compiles the C++ extension)


def pip(python: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    out = subprocess.run([python, "-m", "pip", *args], capture_output=True, text=True, env=env or clean_env(),
                         timeout=1800)
    assert out.returncode == 0, f"pip {' '.join(args)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def dependency_dirs() -> list[str]:
    """The site-packages folders this interpreter imports torch and the train extra from."""
    import importlib.util
    dirs = []
    for name in ("torch", *TRAIN_EXTRA_IMPORTS):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            top = os.path.dirname(os.path.dirname(spec.origin)) if spec.submodule_search_locations \
                else os.path.dirname(spec.origin)
            dirs.append(top)
    return list(dict.fromkeys(dirs))


def fresh_venv(path) -> str:
    """A new virtual environment that sees this interpreter's dependencies (not fastreg); its python."""
    venv.EnvBuilder(with_pip=True, clear=True).create(str(path))
    python = str(path / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(site, "fastreg_test_dependencies.pth"), "w") as f:
        f.write("\n".join(dependency_dirs()) + "\n")
    return python


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """An sdist of a copy of the checkout, and the two wheels pip builds from that sdist."""
    base = tmp_path_factory.mktemp("packaging")
    tree = base / "tree"
    shutil.copytree(ROOT, tree, ignore=COPY_IGNORE)
    out = base / "dist"
    # torch hidden, as in the isolated environment of `python -m build --sdist`.
    sdist = subprocess.run([sys.executable, "-c", f"from setuptools import build_meta; "
                            f"print(build_meta.build_sdist({str(out)!r}))"],
                           capture_output=True, text=True, cwd=tree, env=clean_env(PYTHONPATH=hide_torch(base)),
                           timeout=600)
    assert sdist.returncode == 0, sdist.stderr[-3000:]
    sdist_path = out / sdist.stdout.strip().splitlines()[-1]
    wheels = {}
    for kind, flags in (("native", {"FASTREG_FORCE_CUDA": "0", "MAX_JOBS": "2"}), ("pure", {"FASTREG_NO_EXT": "1"})):
        wheel_dir = base / f"wheel-{kind}"
        pip(sys.executable, "wheel", "--no-build-isolation", "--no-deps", "--no-index", "-w", str(wheel_dir),
            str(sdist_path), env=clean_env(**flags))
        (wheel,) = glob.glob(str(wheel_dir / "fastreg-*.whl"))
        wheels[kind] = wheel
    return {"base": base, "sdist": str(sdist_path), **wheels}


@pytest.mark.slow
def test_sdist_holds_the_sources(dist):
    with tarfile.open(dist["sdist"]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    csrc = {os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "csrc", "**", "*"), recursive=True)
            if os.path.isfile(p)}
    assert csrc and csrc <= names
    assert {"setup.py", "pyproject.toml", "CMakeLists.txt", "README.md", "LICENSE", "docs/design.md"} <= names
    assert set(source_modules()) <= names


@pytest.mark.slow
def test_wheels_hold_every_module(dist):
    for kind in ("native", "pure"):
        with zipfile.ZipFile(dist[kind]) as whl:
            names = set(whl.namelist())
        modules = sorted(n for n in names if n.startswith("fastreg/") and n.endswith(".py"))
        assert modules == source_modules(), kind
        presets = {f"fastreg/configs/{n}.yaml" for n in ("roth-dcgan", "roth-dcgan-lazy8", "wgan-gp", "r1")}
        assert presets <= names, kind  # fastreg train --config <preset> from an installed wheel
        compiled = [n for n in names if n.startswith("fastreg/_C") and n.endswith(".so")]
        assert len(compiled) == (1 if kind == "native" else 0), kind
        assert os.path.basename(dist[kind]).startswith(f"fastreg-{fastreg.__version__}-")
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        with zipfile.ZipFile(dist[kind]) as whl:
            text = whl.read(metadata).decode()
        assert f"Version: {fastreg.__version__}" in text
        assert "Requires-Dist: torch>=2.4" in text and 'extra == "train"' in text
    assert dist["pure"].endswith("-py3-none-any.whl")
    print(f"\nwheel {os.path.basename(dist['native'])}: {len(modules)} modules")


@pytest.mark.slow
def test_wheel_trains_from_outside_the_checkout(dist):
    env_dir = dist["base"] / "venv-native"
    python = fresh_venv(env_dir)
    pip(python, "install", "--no-deps", "--no-index", "--ignore-installed", dist["native"])
    work = dist["base"] / "work"
    work.mkdir()
    where = subprocess.run([python, "-c", "import fastreg, json; print(json.dumps([fastreg.__file__, "
                            "fastreg.backend_info()]))"], capture_output=True, text=True, cwd=work, env=clean_env())
    assert where.returncode == 0, where.stderr
    path, info = json.loads(where.stdout)
    assert path.startswith(str(env_dir)) and not path.startswith(ROOT)
    assert info["backend"] == "native" and info["extension"] and info["cpu"], info
    script = str(env_dir / "bin" / "fastreg")
    version = subprocess.run([script, "--version"], capture_output=True, text=True, cwd=work, env=clean_env())
    assert version.returncode == 0 and version.stdout.startswith(f"fastreg {fastreg.__version__} ")
    run = subprocess.run([script, "train", "--data", "ring8", "--model", "mlp", "--z-dim", "4", "--batch-size", "16",
                          "--steps", "6", "--log-every", "3", "--sample-every", "6", "--checkpoint-every", "6",
                          "--out", "toy-run"], capture_output=True, text=True, cwd=work, env=clean_env(), timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    records = (work / "toy-run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in records] == [3, 6]
    assert (work / "toy-run" / "checkpoints").is_dir()


@pytest.mark.slow
def test_pure_python_wheel_runs_the_reference(dist):
    python = fresh_venv(dist["base"] / "venv-pure")
    pip(python, "install", "--no-deps", "--no-index", "--ignore-installed", dist["pure"])
    code = ("import json, torch, fastreg\n"
            "x = torch.tensor([[3.0, 4.0], [0.0, 1.0]], dtype=torch.float64, requires_grad=True)\n"
            "v = fastreg.grad_penalty(x)\n"
            "(g,) = torch.autograd.grad(v, x)\n"
            "info = fastreg.backend_info()\n"
            "print(json.dumps([info, float(v.detach()), g.tolist(), fastreg.__file__]))\n")
    out = subprocess.run([python, "-W", "error::UserWarning", "-c", code], capture_output=True, text=True,
                         cwd=dist["base"], env=clean_env())
    assert out.returncode == 0, out.stderr
    info, value, grad, path = json.loads(out.stdout)
    assert path.startswith(str(dist["base"] / "venv-pure"))
    assert info["backend"] == "reference" and not info["extension_built"] and info["load_error"] is None
    assert "pure-Python build" in info["note"]
    assert value == pytest.approx(13.0)
    assert sum(grad, []) == pytest.approx([3.0, 4.0, 0.0, 1.0])  # d/dg (1/B) sum n_i^2 = 2 g / B
