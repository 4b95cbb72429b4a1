"""Shared by the test suite (tests/) and the benchmarks (benchmarks/): a test marked ``cuda`` is skipped
where no CUDA device is usable (the marker is declared in pyproject.toml)."""

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    skip_cuda = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_cuda)
