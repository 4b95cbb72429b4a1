"""Fault injection, round two (issue 28): a full disk, a writer interrupted mid-file, a torn last log line.

- ENOSPC while a checkpoint is written (injected under the writer, and on a real 3 MB file system where one
  can be mounted): one line naming the file, exit status 2, no temporary file, the previous checkpoint
  intact; a resume on the still-full disk says so the same way (on main: a traceback in truncate_metrics
  and a ``metrics.jsonl.tmp`` left behind);
- every writer interrupted mid-file (the moment of a kill) keeps the previous file whole, and a writer
  killed with SIGKILL never leaves a torn file under the final name (on main ``fid --json``, config.yaml
  and the experiments' metrics.json were opened with "w": a kill left 0 bytes);
- a last metrics record without its newline is kept, and the next record goes on its own line.
"""

import builtins
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from fastreg import atomic
from fastreg.cli import main
from fastreg.train.checkpoint import latest_checkpoint, list_checkpoints
from fastreg.train.config import TrainConfig, load_yaml, save_yaml
from fastreg.train.metrics_log import read_metrics
from fastreg.train.runs import training_state_of

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class FillingFile:
    """A file on a disk with ``budget`` bytes left: a write past it raises ENOSPC, as the kernel does."""

    def __init__(self, f, budget: int, error=None):
        self._f, self._budget, self._error = f, budget, error

    def write(self, data):
        size = len(data.encode() if isinstance(data, str) else data)
        if size > self._budget:
            raise self._error or OSError(errno.ENOSPC, "No space left on device")
        self._budget -= size
        return self._f.write(data)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def fill_disk_for(monkeypatch, folder, budget=1000, error=None, name=None):
    """Every file opened for writing under ``folder`` from now on meets a full disk after ``budget`` bytes; with
    ``name``, only the file of that name and its temporaries (so what a writer writes before it goes through)."""
    real_open = builtins.open
    folder = os.path.abspath(folder)

    def meant(file) -> bool:
        base = os.path.basename(file)
        return name is None or base == name or (base.endswith(".tmp") and name in base)

    def opener(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if isinstance(file, (str, os.PathLike)) and os.path.abspath(file).startswith(folder) \
                and any(m in mode for m in "wax+") and meant(os.fspath(file)):
            return FillingFile(f, budget, error)
        return f

    monkeypatch.setattr(builtins, "open", opener)


def temporaries(folder) -> list[str]:
    return [os.path.join(d, n) for d, _, names in os.walk(folder) for n in names if n.endswith(".tmp")]


def assert_one_line_disk_full(capsys, path_part: str) -> None:
    err = capsys.readouterr().err
    assert "Traceback" not in err and "unexpected pos" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("fastreg train:")]
    assert len(lines) == 1 and "no space left on the device" in lines[0] and path_part in lines[0], err


def test_disk_full_during_a_checkpoint_is_one_line_and_exit_2(toy_run, tmp_path, monkeypatch, capsys):
    """On main: an ENOSPC traceback, then a chained ``RuntimeError: unexpected pos``, exit 1, a .tmp left."""
    run = shutil.copytree(toy_run, tmp_path / "run")
    fill_disk_for(monkeypatch, run / "checkpoints")
    assert main(["train", "--resume", str(run), "--steps", "15"]) == 2
    assert_one_line_disk_full(capsys, "checkpoint_00000015.pt")
    monkeypatch.undo()
    assert temporaries(run) == []
    assert latest_checkpoint(str(run)).endswith("checkpoint_00000010.pt")
    assert training_state_of(latest_checkpoint(str(run)))["step"] == 10  # the previous one stays valid


def test_a_resume_on_a_full_disk_says_so_and_leaves_no_temporary(toy_run, tmp_path, monkeypatch, capsys):
    """A record after the checkpoint (a kill between checkpoints) makes the resume rewrite metrics.jsonl;
    on main that tracebacked in truncate_metrics and left metrics.jsonl.tmp."""
    run = shutil.copytree(toy_run, tmp_path / "run")
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 12, "d_loss": 1.0, "g_loss": 1.0}) + "\n")
    before = (run / "metrics.jsonl").read_bytes()
    fill_disk_for(monkeypatch, run, budget=100)
    assert main(["train", "--resume", str(run), "--steps", "15"]) == 2
    assert_one_line_disk_full(capsys, str(run))
    monkeypatch.undo()
    assert temporaries(run) == []
    assert (run / "metrics.jsonl").read_bytes() == before


def can_mount_tmpfs(where) -> bool:
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(where)],
                          capture_output=True).returncode == 0


def test_a_real_full_file_system(toy_run, tmp_path, capsys):
    """A 3 MB tmpfs (root only; skipped elsewhere): a checkpoint bigger than the space left, then a resume on
    the disk filled to its last block."""
    from fastreg.train.checkpoint import save_checkpoint

    disk = tmp_path / "disk"
    disk.mkdir()
    if not can_mount_tmpfs(disk):
        pytest.skip("mounting a small tmpfs needs root on Linux")
    try:
        run = shutil.copytree(toy_run, disk / "run", ignore=shutil.ignore_patterns("tensorboard"))
        state = training_state_of(latest_checkpoint(str(run)))
        with pytest.raises(atomic.DiskFullError, match=r"no space left on the device .*checkpoint_00000011\.pt"):
            save_checkpoint({**state, "ballast": torch.zeros(1_000_000)}, str(run), 11, keep=3)
        assert temporaries(run) == [] and len(list_checkpoints(str(run))) == 2
        with open(disk / "filler", "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        assert main(["train", "--resume", str(run), "--steps", "15"]) == 2
        assert_one_line_disk_full(capsys, str(run))
        assert temporaries(run) == []
        assert training_state_of(latest_checkpoint(str(run)))["step"] == 10
        assert load_yaml(str(run / "config.yaml")).steps == 10  # the previous config.yaml, whole
    finally:
        subprocess.run(["umount", str(disk)], check=False)


class Interrupted(Exception):
    """The moment of a kill, half way through a file."""


def writers(toy_run):
    """name -> a function writing ``path`` (each twice: the second write is interrupted)."""
    from fastreg.diagnostics.plots import save_figure
    from fastreg.experiments.parallel_runs import write_json
    from fastreg.train.samples import save_sample_grid, save_scatter

    def figure(path):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig = plt.figure()
        plt.plot(range(100))
        save_figure(fig, plt, path)

    def experiment_metrics(path):
        from fastreg.experiments.budget import CPU
        from fastreg.experiments.report import Report

        assert path.endswith("metrics.json")
        Report("x", "X", os.path.dirname(path), CPU, "digits", (0,), results={"x": list(range(300))}).write()

    def fid_json(path):
        assert main(["fid", str(toy_run), "--samples", "50", "--json", path]) == 0

    return {
        "config.yaml": lambda path: save_yaml(TrainConfig(steps=123), path),
        "fid --json": fid_json,
        "experiment json": lambda path: write_json(path, {"x": list(range(2000))}),
        "experiment metrics.json": experiment_metrics,
        "sample grid": lambda path: save_sample_grid(torch.rand(16, 1, 8, 8), path),
        "scatter": lambda path: save_scatter(torch.randn(200, 2), path),
        "figure": figure,
    }


@pytest.mark.parametrize("name", ["config.yaml", "fid --json", "experiment json", "experiment metrics.json",
                                  "sample grid", "scatter", "figure"])
def test_every_writer_interrupted_mid_file_keeps_the_previous_file(name, toy_run, tmp_path, monkeypatch):
    write = writers(toy_run)[name]
    out = tmp_path / "out"
    out.mkdir()
    path = str(out / {"figure": "figure.png", "experiment metrics.json": "metrics.json"}.get(name, "file"))
    write(path)
    previous = open(path, "rb").read()
    assert len(previous) > 200
    fill_disk_for(monkeypatch, out, budget=100, error=Interrupted(), name=os.path.basename(path))
    with pytest.raises(Interrupted):
        write(path)
    monkeypatch.undo()
    assert open(path, "rb").read() == previous
    assert temporaries(out) == []


KILLED_WRITER = r"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("atomic", sys.argv[2])  # without importing torch: a fast start
atomic = importlib.util.module_from_spec(spec)
spec.loader.exec_module(atomic)
write_text = atomic.write_text
path, i = sys.argv[1], 0
print("ready", flush=True)
while True:
    i += 1
    write_text(path, (f"{i}\n" * 200_000) + "end\n")
"""


def test_a_writer_killed_with_sigkill_never_leaves_a_torn_file(tmp_path):
    """Eight SIGKILLs at staggered moments: the file is always a whole version; the next write clears the
    killed writer's temporary file."""
    path = tmp_path / "results.json"
    path.write_text("0\nend\n")
    env = {**os.environ, "PYTHONPATH": ROOT}
    for delay in (0.0, 0.01, 0.02, 0.03, 0.05, 0.08, 0.13, 0.21):
        child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path), atomic.__file__], env=env,
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline() == "ready\n"
        time.sleep(delay)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close()
        text = path.read_text()
        assert text.endswith("end\n") and len(set(text.splitlines()[:-1])) <= 1, "a torn file"
    atomic.write_text(str(path), "done\n")
    assert path.read_text() == "done\n"
    assert temporaries(tmp_path) == []


def test_a_last_metrics_record_without_its_newline_is_kept(toy_run, tmp_path):
    """On main the next resume appended onto the same line: the step-10 record was lost."""
    run = shutil.copytree(toy_run, tmp_path / "run")
    metrics = run / "metrics.jsonl"
    metrics.write_bytes(metrics.read_bytes().rstrip(b"\n"))
    steps_before = [r["step"] for r in read_metrics(str(run))]
    assert steps_before[-1] == 10
    assert main(["train", "--resume", str(run), "--steps", "15"]) == 0
    lines = metrics.read_text().splitlines()
    assert all(json.loads(line)["step"] for line in lines)  # every line one record
    assert [r["step"] for r in read_metrics(str(run))] == steps_before + [15]
    assert len(list_checkpoints(str(run))) == 3
