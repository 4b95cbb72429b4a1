"""Checkpoints: atomic under SIGKILL, last k kept, pickled code refused, damaged files skipped."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from fastreg.cli import main
from fastreg.train.checkpoint import (DamagedCheckpointError, UnsafeCheckpointError, latest_checkpoint,
                                      list_checkpoints, load_checkpoint, save_checkpoint)
from fastreg.train.config import TrainConfig
from fastreg.train.trainer import load_latest_state, resume, train

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY = dict(data="ring8", model="mlp", z_dim=4, batch_size=8, log_every=5, sample_every=1000, ema=0.9)

# A child that saves checkpoints of a 16 MB payload (every entry equal to the step) forever.
SAVER = """
import sys, torch
from fastreg.train.checkpoint import save_checkpoint
run, step = sys.argv[1], int(sys.argv[2])
payload = torch.empty(4_000_000)
while True:
    step += 1
    payload.fill_(step)
    save_checkpoint({"step": step, "payload": payload}, run, step, keep=2)
    print(step, flush=True)
"""


def test_save_keeps_the_newest_k_and_loads_them(tmp_path):
    for step in range(1, 6):
        save_checkpoint({"step": step, "x": torch.full((3,), float(step))}, str(tmp_path), step, keep=2)
    paths = list_checkpoints(str(tmp_path))
    assert [os.path.basename(p) for p in paths] == ["checkpoint_00000004.pt", "checkpoint_00000005.pt"]
    state = load_checkpoint(latest_checkpoint(str(tmp_path)))
    assert state["step"] == 5 and torch.equal(state["x"], torch.full((3,), 5.0))
    assert sorted(os.listdir(tmp_path / "checkpoints")) == [f"checkpoint_0000000{s}.{e}" for s in (4, 5)
                                                            for e in ("manifest.json", "pt")]


def test_stale_temporary_is_ignored_and_removed(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "checkpoint_00000009.pt.tmp").write_bytes(b"PK\x03\x04 torn")
    assert list_checkpoints(str(tmp_path)) == []
    save_checkpoint({"step": 10}, str(tmp_path), 10, keep=3)
    assert sorted(os.listdir(folder)) == ["checkpoint_00000010.manifest.json", "checkpoint_00000010.pt"]


KILL_DELAYS = (0.0, 0.002, 0.005, 0.01, 0.015, 0.03)  # seconds after the temporary file appears


def _wait_for(predicate, timeout: float, poll: float = 0.0005) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll)
    return False


def _temporary_written_since(folder: str, since_ns: int) -> bool:
    """A checkpoint temporary file written after ``since_ns`` (not one left by an earlier kill)."""
    for name in os.listdir(folder) if os.path.isdir(folder) else []:
        if name.endswith(".tmp"):
            try:
                if os.stat(os.path.join(folder, name)).st_mtime_ns >= since_ns:
                    return True
            except FileNotFoundError:
                pass
    return False


def _left_a_torn_temporary(folder: str) -> bool:
    """A temporary file that does not load: the kill landed mid-write (the final names stay intact)."""
    for name in os.listdir(folder):
        if name.endswith(".pt.tmp"):
            try:
                load_checkpoint(os.path.join(folder, name))
            except DamagedCheckpointError:
                return True
    return False


def test_sigkill_while_saving_leaves_the_previous_checkpoint_loadable(tmp_path):
    """Kill a saving child with SIGKILL at staggered moments after a temporary file appears (a save
    takes 20-60 ms here: from the empty file through the write, fsync and rename), six times."""
    run = str(tmp_path / "run")
    folder = os.path.join(run, "checkpoints")
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    last_step, torn = 0, 0
    for round_, delay in enumerate(KILL_DELAYS):
        started = time.time_ns()
        child = subprocess.Popen([sys.executable, "-c", SAVER, run, str(last_step)], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            if round_ == 0:
                assert _wait_for(lambda: list_checkpoints(run), 60), "the child wrote no checkpoint"
            mid_save = _wait_for(lambda started=started: _temporary_written_since(folder, started), 60)
            time.sleep(delay)
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.kill()
            child.wait(timeout=30)
            child.stdout.close()
            child.stderr.close()
        assert child.returncode == -signal.SIGKILL
        assert mid_save, "no temporary file appeared"
        torn += _left_a_torn_temporary(folder)
        paths = list_checkpoints(run)
        assert 1 <= len(paths) <= 3  # keep=2, plus one when killed between the rename and the clean-up
        for path in paths:  # every complete checkpoint loads and holds its own step
            state = load_checkpoint(path)
            step = int(os.path.basename(path)[len("checkpoint_"):-len(".pt")])
            assert state["step"] == step
            assert torch.equal(state["payload"], torch.full((4_000_000,), float(step)))
        last_step = load_checkpoint(latest_checkpoint(run))["step"]
    assert torn >= 2, f"only {torn} of {len(KILL_DELAYS)} kills left a torn temporary file (landed mid-save)"


class CodeExecutingPayload:
    """Unpickling this runs code: the classic malicious-checkpoint trick."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('pwned')",)


def write_malicious_checkpoint(run_dir, marker, step=20):
    folder = os.path.join(run_dir, "checkpoints")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"checkpoint_{step:08d}.pt")
    torch.save({"step": step, "config": {}, "G": {"w": torch.zeros(2)}, "evil": CodeExecutingPayload(marker)}, path)
    return path


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = write_malicious_checkpoint(str(tmp_path / "run"), marker)
    torch.load(path, weights_only=False)  # the payload is live: an unsafe load runs it
    assert marker.read_text() == "pwned"
    marker.unlink()
    with pytest.raises(UnsafeCheckpointError, match=r"checkpoint .*checkpoint_00000020\.pt refused.*could run "
                                                    r"arbitrary code.*weights_only=True.*exec"):
        load_checkpoint(path)
    with pytest.raises(UnsafeCheckpointError):
        load_latest_state(str(tmp_path / "run"))  # no falling back past an unsafe file either
    assert not marker.exists()


def test_cli_resume_refuses_a_malicious_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    train(TrainConfig(**TOY, steps=10, checkpoint_every=5, out=str(run)))
    marker = tmp_path / "pwned"
    write_malicious_checkpoint(str(run), marker, step=20)
    assert main(["train", "--resume", str(run), "--steps", "30"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint_00000020.pt refused" in err and "weights_only=True" in err
    assert not marker.exists()


def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    run = tmp_path / "run"
    train(TrainConfig(**TOY, steps=10, checkpoint_every=5, out=str(run)))
    newest = run / "checkpoints" / "checkpoint_00000010.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated, as a failing disk would leave it
    with pytest.raises(DamagedCheckpointError, match="checkpoint_00000010.pt is damaged"):
        load_checkpoint(str(newest))
    with pytest.warns(UserWarning, match="checkpoint_00000010.pt is damaged.*trying the one before it"):
        state = load_latest_state(str(run))
    assert state["step"] == 5
    with pytest.warns(UserWarning, match="damaged"):
        resume(str(run), {"steps": 12})
    assert load_checkpoint(latest_checkpoint(str(run)))["step"] == 12


def test_checkpoint_holds_every_part_of_the_trainer(tmp_path):
    config = TrainConfig(data="digits", resolution=8, width=8, z_dim=8, batch_size=4, steps=1, lens=True,
                         reg="roth", out=str(tmp_path / "run"), sample_every=1000, ema=0.9)
    train(config)
    state = load_checkpoint(latest_checkpoint(config.out))
    for key in ("G", "D", "G_ema", "lens", "opt_g", "opt_d", "opt_lens", "scaler", "step", "d_steps", "data",
                "rng", "config", "nonfinite", "sample_shape"):
        assert key in state, key
    assert set(state["rng"]) == {"torch", "cuda", "numpy", "python"}
    assert state["step"] == 1 and state["sample_shape"] == [1, 8, 8]
    vral = TrainConfig(**TOY, variant="vral", steps=1, out=str(tmp_path / "vral"))
    train(vral)
    assert {"meta_fake", "meta_real", "opt_meta"} <= set(load_checkpoint(latest_checkpoint(vral.out)))
