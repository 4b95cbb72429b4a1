"""Build fastreg and its compiled kernels (packaging: docs/design.md section 10).

C++ CPU kernels are always built. CUDA kernels are built when a CUDA toolkit is
found and either a GPU is visible or FASTREG_FORCE_CUDA=1 (FASTREG_FORCE_CUDA=1
without a toolkit is an error; FASTREG_FORCE_CUDA=0 builds CPU kernels only).
FASTREG_NO_EXT=1 gives a pure-Python install that runs every op on the PyTorch
reference. TORCH_CUDA_ARCH_LIST is respected; when unset, kernels are built for
sm_80 and sm_90 (plus PTX for newer GPUs).

The extension is compiled against the torch that is installed, so torch must be
there first and pip must not hide it: `pip install --no-build-isolation .`.
Package list, version and dependencies live in pyproject.toml.
"""

import glob
import os
import re
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CUDA_ARCHS = "8.0;9.0+PTX"
TESTED_TORCH = "2.14.1"
NO_TORCH = (f"fastreg: building the compiled extension needs PyTorch, and none is importable here. Install torch "
            f"first (pip install torch=={TESTED_TORCH}, the tested version; any torch>=2.4 works), then install "
            "fastreg without build isolation: pip install --no-build-isolation . "
            "(or set FASTREG_NO_EXT=1 for a pure-Python install)")


class BuildNeedsTorch(build_ext):
    """build_ext where torch is not importable: one line saying to install torch first."""

    def run(self):
        sys.exit(NO_TORCH)


def env_flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def cuda_root_from_nvcc():
    """The toolkit root behind the `nvcc` on PATH, which may be a wrapper script.

    `nvcc --dryrun` prints the real installation as `TOP=<root>/bin/..`, so
    this works for symlinks and exec-wrappers alike.
    """
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    probe = os.path.join(ROOT, "build", "cuda_probe.cu")
    os.makedirs(os.path.dirname(probe), exist_ok=True)
    with open(probe, "w") as f:
        f.write("__global__ void probe() {}\n")
    try:
        out = subprocess.run([nvcc, "--dryrun", "-c", probe, "-o", probe + ".o"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"TOP=(\S+)", out.stdout + out.stderr)
    return os.path.realpath(match.group(1).strip('"')) if match else None


def find_cuda_home():
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home and os.path.exists(os.path.join(home, "bin", "nvcc")):
        return home
    return cuda_root_from_nvcc()


def nvidia_wheel_include_dirs():
    """Headers torch's CUDA headers need (cusparse.h, ...) from the `nvidia` wheels."""
    try:
        import nvidia
    except ImportError:
        return []
    dirs = []
    for base in nvidia.__path__:
        dirs += sorted(glob.glob(os.path.join(base, "cu*", "include")))
        dirs += sorted(glob.glob(os.path.join(base, "*", "include")))
    return [d for d in dict.fromkeys(dirs) if os.path.isdir(d)]


def cuda_request():
    """FASTREG_FORCE_CUDA as "force" (1), "off" (0) or "auto" (unset: build them where a GPU is visible)."""
    value = os.environ.get("FASTREG_FORCE_CUDA", "").strip().lower()
    if value in ("", "auto"):
        return "auto"
    if value in ("1", "true", "yes", "on"):
        return "force"
    if value in ("0", "false", "no", "off"):
        return "off"
    sys.exit(f"fastreg: FASTREG_FORCE_CUDA must be 1 (build CUDA kernels) or 0 (CPU kernels only), got {value!r}")


def want_cuda(request, cuda_home):
    if request == "force":
        if cuda_home is None:
            sys.exit("fastreg: FASTREG_FORCE_CUDA=1 but no CUDA toolkit was found (no nvcc on PATH, CUDA_HOME unset); "
                     "install the toolkit or set FASTREG_FORCE_CUDA=0 for CPU kernels only")
        return True
    if request == "off" or cuda_home is None:
        return False
    import torch
    return torch.cuda.is_available()


def extension_modules():
    if env_flag("FASTREG_NO_EXT"):
        print("fastreg: FASTREG_NO_EXT=1, pure-Python install (reference ops only)")
        return [], {}
    try:
        import torch  # noqa: F401
    except ImportError:
        # Metadata and the sdist need no torch (e.g. `python -m build --sdist` in an isolated
        # environment); compiling does, and stops with one line saying so.
        return [Extension("fastreg._C", sources=["csrc/fastreg.cpp"])], {"build_ext": BuildNeedsTorch}
    request = cuda_request()
    cuda_home = None if request == "off" else find_cuda_home()
    with_cuda = want_cuda(request, cuda_home)
    if with_cuda:
        # torch.utils.cpp_extension reads CUDA_HOME when it is imported.
        os.environ["CUDA_HOME"] = cuda_home
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_CUDA_ARCHS)
    from torch.utils import cpp_extension

    sources = ["csrc/fastreg.cpp", "csrc/python_module.cpp"] + sorted(glob.glob("csrc/cpu/*.cpp"))
    # at::parallel_for is header-inlined OpenMP: without -fopenmp it runs serially.
    # libgomp.so.1 is the runtime torch itself loads, so the two share one pool.
    # -fno-math-errno: no kernel reads errno, and with it GCC keeps a scalar libm
    # call beside every sqrt, which blocks vectorizing the random-number loops.
    # -ffp-contract=off: no silent FMA contraction, so the AVX-512, AVX2 and
    # baseline code paths give the same bits (seeded noise is the same on any CPU).
    cxx_flags = ["-O3", "-fopenmp", "-fno-math-errno", "-ffp-contract=off"]
    define_macros = []
    include_dirs = [os.path.join(ROOT, "csrc")]
    if with_cuda:
        sources += sorted(glob.glob("csrc/cuda/*.cu"))
        archs = os.environ["TORCH_CUDA_ARCH_LIST"]
        define_macros += [("FASTREG_WITH_CUDA", None), ("FASTREG_CUDA_ARCHS", f'"{archs}"')]
        include_dirs += nvidia_wheel_include_dirs()
        print(f"fastreg: building CUDA kernels with {cuda_home} for TORCH_CUDA_ARCH_LIST={archs}")
        extension = cpp_extension.CUDAExtension
        extra = {"cxx": cxx_flags, "nvcc": ["-O3"]}
    else:
        if request == "off":
            reason = "FASTREG_FORCE_CUDA=0"
        elif cuda_home is None:
            reason = "no CUDA toolkit found"
        else:
            reason = "no GPU visible and FASTREG_FORCE_CUDA unset"
        print(f"fastreg: building CPU kernels only ({reason})")
        extension = cpp_extension.CppExtension
        extra = {"cxx": cxx_flags}
    module = extension("fastreg._C", sources, include_dirs=include_dirs, define_macros=define_macros,
                       extra_compile_args=extra, extra_link_args=["-fopenmp"])
    return [module], {"build_ext": cpp_extension.BuildExtension}


if __name__ == "__main__":
    ext_modules, cmdclass = extension_modules()
    setup(ext_modules=ext_modules, cmdclass=cmdclass)
