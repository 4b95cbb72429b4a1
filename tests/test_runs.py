"""open_run: a saved run opened for reading (fid, diagnose, metrics.sources, the diagnostics reports)
without optimizers, GradScaler, data stream or torch.compile, and without moving the global random state."""

import random

import numpy as np
import pytest
import torch

from fastreg.train import batches
from fastreg.train.config import TrainConfig
from fastreg.train.outputs import sample
from fastreg.train.runs import open_run
from fastreg.train.state import rng_state
from fastreg.train.trainer import Trainer

FIELDS = dict(data="digits", resolution=16, width=8, z_dim=8, steps=3, batch_size=8, log_every=1, sample_every=1000,
              checkpoint_every=1000, ema=0.9, ema_warmup=False, lens=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A trained 3-step run (its Trainer, for comparison) and its folder."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            out = tmp_path_factory.mktemp("runs") / "run"
            trainer = Trainer(TrainConfig(**FIELDS, out=str(out)))
            trainer.train()
    finally:
        torch.set_num_threads(previous)
    return trainer, str(out)


def _same_state(a: dict, b: dict) -> bool:
    return (torch.equal(a["torch"], b["torch"]) and torch.equal(a["numpy"]["keys"], b["numpy"]["keys"])
            and a["numpy"]["pos"] == b["numpy"]["pos"] and a["python"] == b["python"])


def test_open_run_leaves_every_global_random_state_as_it_was(trained):
    torch.manual_seed(123)
    np.random.seed(4)
    random.seed(5)
    before = rng_state()
    open_run(trained[1])
    assert _same_state(before, rng_state())
    assert not _same_state(before, (torch.rand(1), rng_state())[1])  # the comparison can tell states apart


def test_open_run_samples_equal_the_trainers_ema_samples(trained):
    trainer, path = trained
    run = open_run(path)
    assert run.step == trainer.step == 3 and run.shape == trainer.shape == (1, 16, 16)
    assert run.config == trainer.config and run.config.out == path
    z = torch.randn(16, 8, generator=torch.Generator().manual_seed(1))
    expected = trainer.sample(z)
    assert torch.equal(run.sample(z), expected)
    assert not torch.allclose(expected, sample(trainer.G, z)), "the EMA G must differ from the raw G here"
    for name in ("G", "D", "G_ema", "lens"):
        ours, theirs = getattr(run, name).state_dict(), getattr(trainer, name).state_dict()
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs), name
    assert run.G.training and run.D.training and not run.G_ema.training


def test_open_run_builds_no_optimizer_scaler_data_stream_or_compiled_network(trained, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("open_run must not build this")

    monkeypatch.setattr(torch.optim.Adam, "__init__", refuse)
    monkeypatch.setattr(torch.optim.RMSprop, "__init__", refuse)
    monkeypatch.setattr(torch.amp.GradScaler, "__init__", refuse)
    monkeypatch.setattr(batches.BatchStream, "__init__", refuse)
    monkeypatch.setattr(torch.nn.Module, "compile", refuse)
    run = open_run(trained[1], device="cpu")
    assert run.device == torch.device("cpu")


def test_open_run_names_a_missing_run_and_a_missing_checkpoint(trained, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_run(str(tmp_path / "nothing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        open_run(str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="checkpoint_00000009.pt does not exist"):
        open_run(trained[1], checkpoint=str(tmp_path / "checkpoint_00000009.pt"))


def test_a_run_source_is_opened_by_the_callers_open_run(trained, tmp_path):
    """metrics.sources does not import the trainer: a run folder is opened by the open_run it is handed."""
    from fastreg.metrics.sources import open_source

    (tmp_path / "config.yaml").write_text("steps: 3\n")
    with pytest.raises(ValueError, match="is a run folder, and no open_run was given"):
        open_source(str(tmp_path), 8)
    source = open_source(trained[1], 8, seed=3, open_run=open_run)
    assert (source.kind, source.data, source.resolution, source.channels) == ("run", "digits", 16, 1)
    (batch,) = list(source.batches(8))
    z = torch.randn(8, 8, generator=torch.Generator().manual_seed(3))
    assert torch.equal(batch, trained[0].sample(z))
