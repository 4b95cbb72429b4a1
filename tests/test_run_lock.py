"""One writer per run folder: a second train or resume exits 2 naming the folder and the holder's pid; a
lock left by a killed process is taken over."""

import os
import signal
import subprocess
import sys

import pytest

from fastreg.cli import main
from fastreg.train.checkpoint import list_checkpoints, load_checkpoint
from fastreg.train.config import TrainConfig
from fastreg.train.metrics_log import read_metrics
from fastreg.train.trainer import train

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
TOY = ["--data", "ring8", "--model", "mlp", "--z-dim", "4", "--batch-size", "8", "--sample-every", "1000"]

HOLDER = """
import sys, time
from fastreg.train.run_lock import RunLock
lock = RunLock(sys.argv[1])
print("locked", flush=True)
time.sleep(600)
"""


@pytest.fixture
def holder(tmp_path):
    """A child process holding the lock of tmp_path/run (killed with SIGKILL at the end, if still alive)."""
    run = tmp_path / "run"
    run.mkdir()
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], env=ENV, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "locked"
    yield run, child
    child.kill()
    child.wait(timeout=30)
    child.stdout.close()


def test_a_second_train_exits_2_naming_the_folder_and_the_holder(holder, capsys):
    run, child = holder
    assert main(["train", *TOY, "--steps", "2", "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"out: the run folder {run} is in use by another fastreg process (pid {child.pid} on host" in err
    assert list_checkpoints(str(run)) == [] and not (run / "metrics.jsonl").exists()


def test_a_resume_while_another_writes_exits_2(holder, capsys):
    run, child = holder
    config = TrainConfig(data="ring8", model="mlp", z_dim=4, batch_size=8, steps=2, out=str(run))
    from fastreg.train.run_lock import RunLockedError

    with pytest.raises(RunLockedError, match=rf"pid {child.pid}"):
        train(config)
    assert main(["train", "--resume", str(run), "--steps", "4"]) == 2
    assert f"resume: the run folder {run} is in use by another fastreg process (pid {child.pid}" in \
        capsys.readouterr().err


def test_a_killed_holder_leaves_a_stale_lock_that_the_next_writer_takes(holder):
    run, child = holder
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert f"pid {child.pid}" in (run / "run.lock").read_text()  # the file stays, naming the dead holder
    assert main(["train", *TOY, "--steps", "2", "--out", str(run)]) == 0
    assert (run / "run.lock").read_text().startswith(f"pid {os.getpid()} ")
    assert main(["train", "--resume", str(run), "--steps", "3"]) == 0  # released at the end of the run


def test_two_concurrent_trainers_one_wins_and_owns_every_file(tmp_path):
    """On main both passed the 'already holds a run' check; both exited 0 with the files mixed."""
    run = tmp_path / "run"
    commands = [[sys.executable, "-m", "fastreg", "train", *TOY, "--steps", "40", "--checkpoint-every", "10",
                 "--log-every", "5", "--seed", str(seed), "--out", str(run)] for seed in (1, 2)]
    children = [subprocess.Popen(c, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for c in commands]
    results = [(child.wait(timeout=300), *child.communicate()) for child in children]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    winner = next(i for i, (code, _, _) in enumerate(results) if code == 0)
    loser_err = results[1 - winner][2]
    assert "Traceback" not in loser_err
    assert ("is in use by another fastreg process" in loser_err) or ("already holds a run" in loser_err), loser_err
    seeds = {load_checkpoint(path)["config"]["seed"] for path in list_checkpoints(str(run))}
    assert seeds == {winner + 1}
    assert [r["step"] for r in read_metrics(str(run))] == list(range(5, 41, 5))


def test_out_that_cannot_be_created_or_written_exits_2_naming_out(tmp_path, capsys, monkeypatch):
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    for out, message in ((file, f"out: {file} is a file, not a folder"),
                         (file / "run", f"out: cannot create the folder {file / 'run'}: {file} is a file")):
        assert main(["train", *TOY, "--steps", "1", "--out", str(out)]) == 2
        assert message in capsys.readouterr().err
    assert file.read_text() == "mine"
    # A read-only location (simulated: root ignores permission bits, so chmod cannot make one for every user).
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if str(path).startswith(str(tmp_path / "ro")) and flags & os.O_CREAT:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(os, "open", read_only)
    assert main(["train", *TOY, "--steps", "1", "--out", str(tmp_path / "ro")]) == 2
    assert f"out: cannot write to the run folder {tmp_path / 'ro'} (Permission denied" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_exits_2(tmp_path, capsys):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        assert main(["train", *TOY, "--steps", "1", "--out", str(parent / "run")]) == 2
        assert f"out: cannot create the folder {parent / 'run'} (Permission denied)" in capsys.readouterr().err
    finally:
        parent.chmod(0o755)


def test_the_lock_is_released_after_a_failed_run(tmp_path, monkeypatch):
    from fastreg.train.trainer import Trainer

    from fastreg.train.run_lock import RunLock

    monkeypatch.setattr(Trainer, "train", lambda self: 1 / 0)
    fresh, existing = tmp_path / "fresh", tmp_path / "existing"
    existing.mkdir()
    for run in (fresh, existing):
        with pytest.raises(ZeroDivisionError):
            train(TrainConfig(data="ring8", model="mlp", z_dim=4, batch_size=8, steps=1, out=str(run)))
    assert not fresh.exists()  # the folder the lock created, with nothing written into it, is gone again
    RunLock(str(existing)).release()  # free again


def test_under_torchrun_every_rank_fails_with_rank_0s_message(holder):
    """Only rank 0 locks; the others learn its outcome instead of waiting in the first broadcast."""
    run, child = holder
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "fastreg",
               "train", *TOY, "--device", "cpu", "--steps", "2", "--out", str(run)]
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    message = f"out: the run folder {run} is in use by another fastreg process (pid {child.pid}"
    assert result.stderr.count(message) == 2, result.stderr[-3000:]
    assert "exitcode  : 2" in result.stderr
