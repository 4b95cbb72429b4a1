"""FID/KID and toy metrics during training: named records in metrics.jsonl, no effect on the run."""

import pytest
import torch

from fastreg.metrics.classifier import load_or_train_classifier
from fastreg.train.config import ConfigError, TrainConfig
from fastreg.train.metrics_log import read_metrics
from fastreg.train.outputs import evaluation_postfix
from fastreg.train.trainer import Trainer

DIGITS8 = dict(data="digits", resolution=8, width=8, z_dim=8, batch_size=16, steps=5, log_every=1,
               sample_every=1000, checkpoint_every=1000, ema=0.9)


def train_and_read(tmp_path, name, **fields):
    trainer = Trainer(TrainConfig(out=str(tmp_path / name), **fields))
    trainer.train()
    return trainer, read_metrics(trainer.config.out)


def test_fid_records_name_the_extractor_and_leave_training_unchanged(tmp_path):
    # The run loads the cached classifier (training it leaves the RNG alone too: test_extractors.py).
    load_or_train_classifier("digits", 8)
    evaluated, records = train_and_read(tmp_path, "eval", **DIGITS8, eval_every=2, eval_samples=64)
    plain, plain_records = train_and_read(tmp_path, "plain", **DIGITS8)
    fid_records = [r for r in records if "fid/classifier:digits" in r]
    assert [r["step"] for r in fid_records] == [2, 4, 5]  # every 2 steps and the last
    for r in fid_records:
        assert set(r) == {"step", "fid/classifier:digits", "fid_residue/classifier:digits", "kid/classifier:digits",
                          "kid_std/classifier:digits", "classifier_accuracy/classifier:digits", "eval_seconds"}
        assert 0.9 < r["classifier_accuracy/classifier:digits"] <= 1  # the features' quality with every FID
        assert r["fid/classifier:digits"] > 0 and 0 <= r["fid_residue/classifier:digits"] < 1e-3 * r[
            "fid/classifier:digits"]
    losses = [(r["step"], r["d_loss"], r["g_loss"]) for r in records if "d_loss" in r]
    assert losses == [(r["step"], r["d_loss"], r["g_loss"]) for r in plain_records]
    for module, reference in ((evaluated.G, plain.G), (evaluated.D, plain.D), (evaluated.G_ema, plain.G_ema)):
        for p, q in zip(module.state_dict().values(), reference.state_dict().values()):
            assert torch.equal(p, q)


def test_progress_bar_shows_the_latest_evaluation_briefly():
    record = {"step": 4, "fid/classifier:digits": 12.345678, "fid_residue/classifier:digits": 0.0,
              "kid/classifier:digits": 0.0123456, "kid_std/classifier:digits": 0.001, "eval_seconds": 1.5}
    assert evaluation_postfix(record) == {"fid": "12.3", "kid": "0.0123"}
    assert evaluation_postfix({"wasserstein_1": 0.25, "modes_covered": 7, "high_quality": 0.5}) == {
        "w1": "0.25", "modes": "7"}


def test_evaluation_postfix_leaves_the_bar_its_width():
    """Issue 16: at 120 columns the long ``fid[classifier:digits]=..., kid[...]`` postfix squeezed the bar of a
    demo run to one character. The trainer's postfix (losses and the latest evaluation) leaves it 15 or more."""
    from tqdm import tqdm

    record = {"fid/classifier:digits": 123.456, "kid/classifier:digits": 114.2345, "kid_std/classifier:digits": 1.0}
    postfix = {"d": "1.234", "g": "0.567", **evaluation_postfix(record)}
    line = tqdm.format_meter(750, 1500, 123.0, ncols=120, prefix="digits-ns-roth-seed1", unit="step",
                             postfix=", ".join(f"{k}={v}" for k, v in postfix.items()))
    assert len(line) <= 120
    assert len(line.split("|")[1]) >= 15, line


def test_toy_runs_log_wasserstein_and_mode_coverage(tmp_path):
    _, records = train_and_read(tmp_path, "toy", data="misspecified3d", model="mlp", z_dim=4, batch_size=32, steps=3,
                                log_every=3, sample_every=1000, checkpoint_every=1000, eval_every=3, eval_samples=200)
    (toy,) = [r for r in records if "wasserstein_1" in r]
    assert toy["step"] == 3 and 0 <= toy["modes_covered"] <= 7 and 0 <= toy["high_quality"] <= 1
    assert toy["wasserstein_1"] > 0 and not any(k.startswith("fid") for k in toy)


@pytest.mark.parametrize("fields,message", [
    ({"eval_every": -1}, "eval_every:"), ({"eval_samples": 1}, "eval_samples:"),
    ({"eval_extractor": "fid"}, "eval_extractor:"),
    ({"eval_extractor": "classifier", "data": "ring8", "model": "mlp"}, "eval_extractor:"),
    ({"eval_extractor": "inception:/nonexistent/w.pth", "eval_every": 10}, "eval_extractor: no Inception weights"),
])
def test_bad_evaluation_fields_are_named(fields, message):
    with pytest.raises(ConfigError, match=f"^{message}"):
        TrainConfig(**fields).validate()
