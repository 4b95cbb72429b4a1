# fastreg: `make demo` and `make test` are the whole quick start.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
CMAKE_BUILD := build/cmake
JOBS ?= 2

# What pyproject.toml declares for the core, fastreg[train], fastreg[mnist5k] and fastreg[test]: one list.
DECLARED_DEPS = $$($(PY) -c 'import importlib, sys; \
	toml = importlib.import_module("tomllib" if sys.version_info >= (3, 11) else "pip._vendor.tomli"); \
	p = toml.load(open("pyproject.toml", "rb"))["project"]; x = p["optional-dependencies"]; \
	print(*p["dependencies"], *x["train"], *x["mnist5k"], *x["test"])')

# The extension is rebuilt only when its sources or its build flags change: a stamp file newer
# than every source, and a flags file rewritten only when the flags differ from the last build's.
# CUDA kernels are built wherever nvcc exists unless FASTREG_FORCE_CUDA says otherwise.
ifeq ($(origin FASTREG_FORCE_CUDA),undefined)
FORCE_CUDA := $(shell command -v nvcc >/dev/null 2>&1 && echo 1 || echo 0)
else
FORCE_CUDA := $(FASTREG_FORCE_CUDA)
endif
BUILD_FLAGS := FASTREG_FORCE_CUDA=$(FORCE_CUDA) FASTREG_NO_EXT=$(FASTREG_NO_EXT) \
	TORCH_CUDA_ARCH_LIST=$(TORCH_CUDA_ARCH_LIST) $(TORCH_PINS)
FLAGS_FILE := build/make-build-flags
BUILD_STAMP := build/make-build.stamp
EXT_SOURCES := $(shell find csrc -type f) setup.py pyproject.toml
$(shell mkdir -p build && (echo '$(BUILD_FLAGS)' | cmp -s - $(FLAGS_FILE) || echo '$(BUILD_FLAGS)' > $(FLAGS_FILE)))

CSRC_FILES = $(shell find csrc -name '*.h' -o -name '*.cpp' -o -name '*.cu')

.PHONY: venv build lint lint-fix ctest pytest test demo bench bench-report gpu-check clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet $(TORCH_PINS) $(DECLARED_DEPS)
	touch $@

venv: $(VENV)/.installed

# Compiles the extension in place (editable install), only when the stamp is out of date.
$(BUILD_STAMP): $(EXT_SOURCES) $(FLAGS_FILE) | $(VENV)/.installed
	MAX_JOBS=$(JOBS) FASTREG_FORCE_CUDA=$(FORCE_CUDA) \
		$(if $(TORCH_CUDA_ARCH_LIST),TORCH_CUDA_ARCH_LIST='$(TORCH_CUDA_ARCH_LIST)') \
		$(if $(FASTREG_NO_EXT),FASTREG_NO_EXT='$(FASTREG_NO_EXT)') \
		$(PY) -m pip install --quiet --no-build-isolation --no-deps -e .
	touch $@

build: $(BUILD_STAMP)

# ruff (rules in pyproject.toml) and clang-format (.clang-format) report; lint-fix applies them.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/clang-format --dry-run --Werror $(CSRC_FILES)

lint-fix: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/clang-format -i $(CSRC_FILES)

ctest: venv
	cmake -S . -B $(CMAKE_BUILD) -DPython_EXECUTABLE=$(abspath $(PY)) -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build $(CMAKE_BUILD) -j $(JOBS)
	cd $(CMAKE_BUILD) && ctest --output-on-failure

pytest: build
	$(PY) -m pytest tests

test: lint build ctest pytest

demo: build
	$(PY) -m fastreg demo --out runs/demo

# `make bench BENCH_THREADS=1`: one run at that many torch threads, into results/<device>-<n>thread.json; the run
# records its load and calibration kernel and is judged noisy or not (benchmarks/quality.py).
BENCH_THREADS ?= $(shell nproc)
# Each round of an op benchmark loops the op for at least 20 ms: single calls of 0.1-8 ms spread by 25-80% (IQR /
# median) on an idle 2-core EPYC, loops of 20 ms by at most 16% (the D-step and iteration benchmarks time single
# calls with pedantic rounds and are not affected).
BENCH_ROUND_TIME = --benchmark-min-time=0.02
bench: build
	mkdir -p benchmarks/results
	OMP_NUM_THREADS=$(BENCH_THREADS) $(PY) -m pytest benchmarks --benchmark-enable --benchmark-only $(BENCH_ROUND_TIME) \
		--benchmark-json=benchmarks/results/$$($(PY) -c "from fastreg.ops import backend as b; \
		print(b.device_tag())")-$(BENCH_THREADS)thread.json
	$(PY) benchmarks/report.py

bench-report: venv
	$(PY) benchmarks/report.py

# On a CUDA machine: build for the visible GPU, run the CUDA tests and the benchmarks (benchmarks/gpu_check.sh).
gpu-check: venv
	bash benchmarks/gpu_check.sh $(PY)

clean:
	rm -rf build $(CMAKE_BUILD) fastreg/_C*.so *.egg-info
