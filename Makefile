# fastreg: `make demo` and `make test` are the whole quick start.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
DEV_DEPS := numpy scipy scikit-learn matplotlib pyyaml tqdm pytest pytest-benchmark expecttest hypothesis
CMAKE_BUILD := build/cmake
JOBS ?= 2

.PHONY: venv build ctest pytest test demo bench bench-report clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet $(TORCH_PINS) $(DEV_DEPS)
	touch $@

venv: $(VENV)/.installed

# Compiles the extension in place (CUDA kernels too wherever nvcc exists).
build: venv
	MAX_JOBS=$(JOBS) FASTREG_FORCE_CUDA=$${FASTREG_FORCE_CUDA-$$(command -v nvcc >/dev/null && echo 1 || echo 0)} \
		$(PY) -m pip install --quiet --no-build-isolation --no-deps -e .

ctest: venv
	cmake -S . -B $(CMAKE_BUILD) -DPython_EXECUTABLE=$(abspath $(PY)) -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build $(CMAKE_BUILD) -j $(JOBS)
	cd $(CMAKE_BUILD) && ctest --output-on-failure

pytest: build
	$(PY) -m pytest tests

test: build ctest pytest

demo: build
	$(PY) -m fastreg demo --out runs/demo

bench: build
	mkdir -p benchmarks/results
	$(PY) -m pytest benchmarks --benchmark-enable --benchmark-only \
		--benchmark-json=benchmarks/results/$$($(PY) -c "import fastreg.backend as b; print(b.device_tag())").json
	$(PY) benchmarks/report.py

bench-report: venv
	$(PY) benchmarks/report.py

clean:
	rm -rf build $(CMAKE_BUILD) fastreg/_C*.so *.egg-info
