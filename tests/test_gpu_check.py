"""`make gpu-check` (benchmarks/gpu_check.sh) refuses at once, naming the reason, where it cannot run."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "gpu_check.sh")


def run_check(python, **env):
    full_env = {**os.environ, **env}
    return subprocess.run(["bash", SCRIPT, python], capture_output=True, text=True, env=full_env, timeout=300)


def test_refuses_without_a_visible_gpu():
    # An empty CUDA_VISIBLE_DEVICES hides every GPU, so this holds on GPU machines too.
    out = run_check(sys.executable, CUDA_VISIBLE_DEVICES="")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "gpu-check: no CUDA GPU is visible to torch" in out.stderr
    assert "building" not in out.stdout  # nothing was built or run


def test_refuses_a_python_without_torch(tmp_path):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    out = run_check(str(fake))
    assert out.returncode == 2
    assert f"{fake} cannot import torch" in out.stderr
