"""--on-nonfinite stop|skip: injected NaN in the data, a huge learning rate."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch

from fastreg.cli import main
from fastreg.train.batches import BatchStream
from fastreg.train.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from fastreg.train.config import ConfigError, TrainConfig
from fastreg.train.metrics_log import read_metrics
from fastreg.train.nonfinite import NonFiniteError, NonFiniteGuard
from fastreg.train.trainer import Trainer, train

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY = dict(data="ring8", model="mlp", z_dim=4, batch_size=8, ema=0.9, sample_every=1000)


def poison_batches(monkeypatch, calls):
    """The real batches of the given next() calls (0-based) get a NaN."""
    original, count = BatchStream.next, {"n": 0}

    def next_batch(self):
        batch = original(self)
        if count["n"] in calls:
            batch = batch.clone()
            batch[0, 0] = math.nan
        count["n"] += 1
        return batch

    monkeypatch.setattr(BatchStream, "next", next_batch)


def all_finite(module):
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


def test_nan_in_data_stop_keeps_last_good_checkpoint_and_writes_diagnostics(tmp_path, monkeypatch):
    poison_batches(monkeypatch, {12})  # the D step of step 13 (0-based step 12)
    config = TrainConfig(**TOY, steps=20, checkpoint_every=5, log_every=5, out=str(tmp_path / "run"))
    with pytest.raises(NonFiniteError, match=r"non-finite real_batch = nan at step 12") as caught:
        train(config)
    error = caught.value
    assert (error.tensor, error.step) == ("real_batch", 12)
    assert {"real_batch", "d_loss", "grad D.net.0.weight"} <= {k for k, v in error.values.items()
                                                              if not math.isfinite(v)}
    checkpoints = list_checkpoints(config.out)
    assert [os.path.basename(p) for p in checkpoints] == ["checkpoint_00000005.pt", "checkpoint_00000010.pt"]
    assert error.checkpoint == checkpoints[-1]
    state = load_checkpoint(checkpoints[-1])
    assert all(bool(torch.isfinite(t).all()) for t in state["D"].values())
    with open(error.diagnostics) as f:
        report = json.load(f)
    assert os.path.basename(error.diagnostics) == "nonfinite_step_000012.json"
    assert report["tensor"] == "real_batch" and report["step"] == 12 and report["policy"] == "stop"
    assert report["values"]["real_batch"] == "nan" and report["values"]["fake_batch"] > 0
    assert report["last_good_checkpoint"] == checkpoints[-1]
    assert all(math.isfinite(v) for v in report["parameter_peaks"]["D"].values())  # the update never ran


def test_nan_in_data_skip_drops_that_update_and_counts_it(tmp_path, monkeypatch):
    poison_batches(monkeypatch, {3, 7})
    trainer = Trainer(TrainConfig(**TOY, steps=10, on_nonfinite="skip", out=str(tmp_path / "run")))
    for step in range(10):
        D_before = [p.detach().clone() for p in trainer.D.parameters()]
        G_before = [p.detach().clone() for p in trainer.G.parameters()]
        adam_steps = [s["step"].item() for s in trainer.opt_d.state.values()]
        trainer.iteration()
        D_same = all(torch.equal(a, b) for a, b in zip(D_before, trainer.D.parameters()))
        G_same = all(torch.equal(a, b) for a, b in zip(G_before, trainer.G.parameters()))
        assert D_same == (step in (3, 7)), step   # the poisoned D updates, and only they, are dropped
        assert not G_same                         # the G updates go on
        if step in (3, 7):
            assert [s["step"].item() for s in trainer.opt_d.state.values()] == adam_steps  # Adam untouched
    assert trainer.guard.skipped == 2 and trainer.guard.last_skipped[0] == "real_batch"
    assert all_finite(trainer.D) and all_finite(trainer.G)


def test_skip_counts_appear_in_the_metrics(tmp_path, monkeypatch):
    poison_batches(monkeypatch, {1, 2, 6})
    run = train(TrainConfig(**TOY, steps=8, log_every=4, on_nonfinite="skip", out=str(tmp_path / "run")))
    assert [(r["step"], r["nonfinite_skipped"]) for r in read_metrics(run)] == [(4, 2), (8, 3)]
    assert load_checkpoint(latest_checkpoint(run))["nonfinite"] == {"skipped": 3, "updates": 16}


HUGE_LR = dict(variant="lsgan", lr_d=1e20)  # D's next update overflows the losses that follow to inf


def test_huge_learning_rate_stop_exits_non_zero_naming_the_tensor(tmp_path):
    """Four good steps, then a resume with a huge D learning rate: exit 3, the tensor named, step 4's
    checkpoint kept as the newest, the diagnostics written."""
    out = tmp_path / "run"
    train(TrainConfig(**TOY, variant="lsgan", steps=4, checkpoint_every=2, out=str(out)))
    result = subprocess.run([sys.executable, "-m", "fastreg", "train", "--resume", str(out), "--steps", "10",
                             "--lr-d", "1e20"],
                            capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert "stopped (--on-nonfinite stop): non-finite g_loss = inf at step 4" in result.stderr
    report_path = out / "nonfinite_step_000004.json"
    assert f"Diagnostics: {report_path}" in result.stderr
    report = json.loads(report_path.read_text())
    assert report["tensor"] == "g_loss" and report["values"]["g_loss"] == "inf"
    assert report["learning_rates"]["opt_d"] == [1e20]
    assert f"Last good checkpoint: {out}/checkpoints/checkpoint_00000004.pt" in result.stderr
    assert load_checkpoint(latest_checkpoint(str(out)))["step"] == 4  # nothing written after the failure


def test_huge_learning_rate_skip_finishes_with_finite_parameters(tmp_path):
    config = TrainConfig(**TOY, **HUGE_LR, steps=10, log_every=5, on_nonfinite="skip",
                         out=str(tmp_path / "run"))
    trainer = Trainer(config)
    trainer.train()
    records = read_metrics(config.out)
    assert [r["step"] for r in records] == [5, 10]
    assert 0 < records[0]["nonfinite_skipped"] <= records[1]["nonfinite_skipped"] == trainer.guard.skipped
    assert all_finite(trainer.G) and all_finite(trainer.D) and all_finite(trainer.G_ema)


def test_deferred_check_names_the_first_bad_update():
    """The CUDA path: values wait (on the device) until flush(); the first non-finite one is reported."""
    guard = NonFiniteGuard("stop", defer=True)
    names = ["d_loss", "grad D.w"]
    for step, values in enumerate([[1.0, 2.0], [1.0, math.inf], [math.nan, 1.0]]):
        assert guard.check(step, names, torch.tensor(values, dtype=torch.float64))  # no verdict yet
    with pytest.raises(NonFiniteError, match=r"non-finite grad D.w = inf at step 1 \(update 1\)") as caught:
        guard.flush()
    assert caught.value.values == {"d_loss": 1.0, "grad D.w": math.inf} and caught.value.detected_at == 2
    guard.flush()  # nothing pending any more


def test_policy_and_check_interval_are_validated():
    with pytest.raises(ConfigError, match="^on_nonfinite:"):
        TrainConfig(on_nonfinite="ignore").validate()
    with pytest.raises(ConfigError, match="^nonfinite_check_every:"):
        TrainConfig(nonfinite_check_every=0).validate()
    assert main(["train", "--on-nonfinite", "retry"]) == 2
