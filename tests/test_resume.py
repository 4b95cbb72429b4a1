"""Exact resume on CPU: 20 steps straight == 10 steps, a crash, a resume and 10 more (bitwise)."""

import pytest
import torch

from fastreg.train.checkpoint import latest_checkpoint, load_checkpoint
from fastreg.train.config import TrainConfig
from fastreg.train.metrics_log import read_metrics
from fastreg.train.trainer import Trainer, resume, train

pytestmark = pytest.mark.usefixtures("one_thread")

TOY = dict(data="ring8", model="mlp", z_dim=4, batch_size=8)
DIGITS = dict(data="digits", resolution=8, width=8, z_dim=8)
# name: (config fields, steps, crash before step crash + 1; checkpoints every `crash` steps)
CASES = {
    # The case: 20 steps straight vs 10 + resume + 10. Roth's annealed gamma (a function of
    # the D-step counter), linearly decaying instance noise, the generator EMA.
    "toy-roth-annealed-noise": (dict(**TOY, variant="ns", reg="roth", gamma_anneal=0.01, noise=0.1), 20, 10),
    # VRAL's meta-discriminators and their optimizer.
    "toy-vral": (dict(**TOY, variant="vral"), 20, 10),
    # Shuffled epochs of the 1,797 digits: the checkpoint lies mid-epoch, the stream wraps after the resume.
    "digits-epoch-wrap": (dict(**DIGITS, batch_size=128, n_critic=2), 10, 5),
    # The Tempered lens and its optimizer, lazy R1 every 2nd D step.
    "digits-lens-lazy-r1": (dict(**DIGITS, batch_size=4, lens=True, reg="r1", reg_every=2), 6, 3),
}


def config(tmp_path, name, fields, steps, every):
    return TrainConfig(**{**dict(steps=steps, checkpoint_every=every, log_every=3, sample_every=1000, ema=0.9,
                                 out=str(tmp_path / name)), **fields})


def crash_at(monkeypatch, step: int):
    """Make the trainer die (like a killed process) when it is about to run iteration ``step + 1``."""
    original = Trainer.iteration

    def iteration(self, *args, **kwargs):
        if self.step == step:
            raise KeyboardInterrupt(f"simulated crash before step {step + 1}")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "iteration", iteration)


def assert_bitwise_equal(a, b, where="state"):
    """Every tensor equal bit for bit, every other value equal, the same keys."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a.view(torch.uint8) if a.dtype == torch.bool else a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert set(a) == set(b), f"{where}: keys {sorted(set(a) ^ set(b))} differ"
        for key in a:
            assert_bitwise_equal(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_bitwise_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b or (a != a and b != b), f"{where}: {a!r} != {b!r}"


@pytest.mark.parametrize("case", CASES)
def test_resume_is_bitwise_exact(case, tmp_path, monkeypatch):
    fields, steps, crash = CASES[case]
    straight = load_checkpoint(latest_checkpoint(train(config(tmp_path, "straight", fields, steps, crash))))

    interrupted = config(tmp_path, "interrupted", fields, steps, crash)
    with monkeypatch.context() as patch:
        crash_at(patch, crash)
        with pytest.raises(KeyboardInterrupt):
            train(interrupted)
    assert load_checkpoint(latest_checkpoint(interrupted.out))["step"] == crash
    resumed = load_checkpoint(latest_checkpoint(resume(interrupted.out)))

    assert resumed["step"] == straight["step"] == steps
    for state in (straight, resumed):
        state["config"].pop("out")
    assert_bitwise_equal(resumed, straight)
    logged = [r["step"] for r in read_metrics(interrupted.out)]
    assert logged == sorted({*range(3, steps + 1, 3), steps})


def test_epoch_wrap_happens_after_the_resume_point():
    """The digits case really crosses an epoch boundary between its checkpoint and its end."""
    fields, steps, crash = CASES["digits-epoch-wrap"]
    per_epoch = 1797 // fields["batch_size"]
    assert crash * fields["n_critic"] < per_epoch < steps * fields["n_critic"]
