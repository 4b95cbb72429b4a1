#!/usr/bin/env bash
# The one-shot GPU check (`make gpu-check`, or `bash benchmarks/gpu_check.sh [PYTHON]` on a machine
# whose python already has torch, pytest and pytest-benchmark and no package index):
#   1. refuses at once, exit 2, unless torch sees a CUDA GPU and a CUDA toolkit is there;
#   2. builds the extension in place for the visible GPU's architecture only
#      (TORCH_CUDA_ARCH_LIST from torch.cuda.get_device_capability(), FASTREG_FORCE_CUDA=1);
#   3. runs the CUDA tests (pytest -m cuda) and the build test;
#   4. runs the benchmarks into benchmarks/results/<device>.json and regenerates benchmarks/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-${PYTHON:-python3}}

fail() { echo "gpu-check: $*" >&2; exit 2; }

"$PY" -c "import torch" 2>/dev/null || fail "$PY cannot import torch; pass a python with torch installed"
"$PY" -c "import pytest, pytest_benchmark" 2>/dev/null \
    || fail "$PY lacks pytest or pytest-benchmark (pip install 'fastreg[test]' or pytest pytest-benchmark)"
"$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() and torch.cuda.device_count() > 0 else 1)" \
    || fail "no CUDA GPU is visible to torch (torch.cuda.is_available() is False, torch $("$PY" -c 'import torch; print(torch.__version__)')); run this on a machine with an NVIDIA GPU"
if [ -z "${CUDA_HOME:-}" ] && ! command -v nvcc >/dev/null 2>&1; then
    fail "a GPU is visible but no CUDA toolkit is (no nvcc on PATH, CUDA_HOME unset): the CUDA kernels cannot be built"
fi

ARCH=$("$PY" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
DEVICE=$("$PY" -c "import torch; print(torch.cuda.get_device_name())")
echo "gpu-check: $DEVICE, compute capability $ARCH"

echo "gpu-check: building the extension for TORCH_CUDA_ARCH_LIST=$ARCH"
FASTREG_FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="$ARCH" MAX_JOBS="${JOBS:-$(nproc)}" \
    "$PY" -m pip install --quiet --no-build-isolation --no-deps -e .
# The Makefile's build stamp no longer describes the library in place: the next `make build` rebuilds.
rm -f build/make-build.stamp
"$PY" -c "
import fastreg
info = fastreg.backend_info()
print('gpu-check:', info['note'])
assert info['cuda_usable'], 'the CUDA kernels were built but cannot run: %s' % info
"

echo "gpu-check: CUDA tests"
"$PY" -m pytest -m cuda tests -q
"$PY" -m pytest tests/test_build.py -q

TAG=$("$PY" -c "from fastreg.ops import backend as b; print(b.device_tag())")
mkdir -p benchmarks/results
echo "gpu-check: benchmarks -> benchmarks/results/$TAG.json"
"$PY" -m pytest benchmarks --benchmark-enable --benchmark-only --benchmark-min-time=0.02 --benchmark-json="benchmarks/results/$TAG.json" -q
"$PY" benchmarks/report.py
echo "gpu-check: done; commit benchmarks/results/$TAG.json and benchmarks/README.md"
