"""The sub-batch penalty (issue 26, ``reg_fraction``): the penalty on the first ceil(f B) rows of each batch."""

import copy
import math

import pytest
import torch
import torch.nn as nn

from fastreg.models import DCGANDiscriminator, MLPDiscriminator
from fastreg.regularizers import REGULARIZERS, subbatch
from fastreg.train.config import ConfigError, TrainConfig


def _mlp():
    torch.manual_seed(0)
    return MLPDiscriminator(in_dim=3, hidden=16).double()


def _batches(n=8):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, generator=g, dtype=torch.float64), torch.randn(n, 3, generator=g, dtype=torch.float64)


def _grad(D, loss):
    D.zero_grad(set_to_none=True)
    loss.backward()
    return torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).flatten() for p in D.parameters()])


@pytest.mark.parametrize("reg", ["roth", "r1", "r2", "r1r2"])
def test_the_two_halves_average_to_the_full_penalty(reg):
    """A mean over rows: the penalties (and their gradients) of the first and the second half average to the
    full batch's exactly, so a random half is an unbiased estimate."""
    D, (xr, xf) = _mlp(), _batches()
    row = REGULARIZERS[reg]
    full = row.penalty(D, xr, xf)
    g_full = _grad(D, full.penalty)
    first = row.penalty(D, xr, xf, fraction=0.5)
    g_first = _grad(D, first.penalty)
    second = row.penalty(D, xr.flip(0), xf.flip(0), fraction=0.5)
    g_second = _grad(D, second.penalty)
    torch.testing.assert_close((first.penalty + second.penalty) / 2, full.penalty, rtol=1e-12, atol=0)
    torch.testing.assert_close((g_first + g_second) / 2, g_full, rtol=1e-10, atol=1e-14)
    assert not torch.allclose(first.penalty, full.penalty)  # a half is not the whole: the test can fail
    torch.testing.assert_close(first.v_real.reshape(-1), D(xr).reshape(-1))  # the loss's logits: every row
    torch.testing.assert_close(first.v_fake.reshape(-1), D(xf).reshape(-1))


def test_the_penalty_is_the_penalty_of_the_first_rows():
    D, (xr, xf) = _mlp(), _batches(10)
    row = REGULARIZERS["roth"]
    got = row.penalty(D, xr, xf, fraction=0.25).penalty  # ceil(2.5) = 3 rows of each batch
    want = row.penalty(D, xr[:3], xf[:3]).penalty
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert subbatch.subbatch_rows(10, 0.25) == 3 and subbatch.subbatch_rows(64, 0.25) == 16
    assert subbatch.subbatch_rows(3, 0.01) == 1


def test_d_sees_the_sub_batch_rows_only_in_the_penalty():
    """Rows per D call: two plain forwards on all 64 rows, then the penalty's on 16 (R1: the real sub-batch;
    the row's own plain forward of the fake sub-batch too)."""
    D = nn.Sequential(nn.Flatten(), nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    rows = []
    D.register_forward_pre_hook(lambda m, args: rows.append(args[0].shape[0]))
    xr, xf = torch.randn(64, 3), torch.randn(64, 3)
    REGULARIZERS["r1"].penalty(D, xr, xf, fraction=0.25).penalty.backward()
    assert rows == [64, 64, 16, 16]
    for first in (True, False):
        rows.clear()
        REGULARIZERS["roth"].penalty(D, xr, xf, fraction=0.25, penalty_grad="finite-difference").penalty.backward()
        # the joint penalty forward on 2 x 16 rows, the one-sided perturbed call; on D's first finite-difference
        # penalty only, between them, the determinism probe's two forwards of 2 rows
        assert rows == ([64, 64, 32, 2, 2, 32] if first else [64, 64, 32, 32])


def test_batch_norm_running_statistics_are_updated_once_per_loss_forward():
    torch.manual_seed(0)
    D = DCGANDiscriminator(width=8, resolution=16, channels=3, norm="batch").double()
    xr, xf = torch.randn(8, 3, 16, 16, dtype=torch.float64), torch.randn(8, 3, 16, 16, dtype=torch.float64)
    plain = copy.deepcopy(D)
    plain(xr), plain(xf)
    REGULARIZERS["roth"].penalty(D, xr, xf, fraction=0.5).penalty.backward()
    for (name, got), want in zip(D.state_dict().items(), plain.state_dict().values()):
        if "running" in name or "num_batches" in name:
            assert torch.equal(got, want), name


@pytest.mark.parametrize("fraction", [0, -0.5, 1.5, True, "half", math.nan])
def test_a_bad_fraction_is_refused_by_name(fraction):
    with pytest.raises(ValueError, match=r"^fraction: the share of each batch's rows .* must lie in \(0, 1\]"):
        REGULARIZERS["r1"].penalty(_mlp(), *_batches(), fraction=fraction)


def _config(**fields):
    base = dict(data="digits", steps=2, batch_size=8, width=8, resolution=16, log_every=1, sample_every=1000,
                checkpoint_every=1000, out="unused")
    return TrainConfig(**{**base, **fields})


def test_the_config_checks_reg_fraction():
    assert _config(reg="roth", reg_fraction=0.25).validate().reg_fraction == 0.25
    with pytest.raises(ConfigError, match=r"^reg_fraction: the share .* \(0, 1\], got 0"):
        _config(reg="roth", reg_fraction=0).validate()
    with pytest.raises(ConfigError, match="^reg_fraction: 0.5 takes the penalty on a sub-batch, but variant 'ns' "
                                          "with reg none has no penalty"):
        _config(reg_fraction=0.5).validate()
    assert _config(variant="wgan-gp", reg_fraction=0.5).validate().reg_fraction == 0.5  # wgan-gp carries gp


def test_the_trainer_takes_the_sub_batch_penalty(tmp_path):
    from fastreg.train.trainer import Trainer

    torch.manual_seed(0)
    trainer = Trainer(_config(reg="roth", reg_fraction=0.25, out=str(tmp_path / "run")).validate())
    out = trainer.iteration()
    assert math.isfinite(float(out["penalty"])) and float(out["penalty"]) > 0


def test_the_amortized_study_settings_are_valid_runs(tmp_path):
    """benchmarks/amortized_study.py's settings: each a valid config at the tiny scale, the same D for all."""
    import importlib.util
    import os

    from fastreg.experiments import runs
    from fastreg.experiments.budget import TINY

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks",
                        "amortized_study.py")
    spec = importlib.util.spec_from_file_location("amortized_study", path)
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    assert set(study.SETTINGS) == {"unregularized", "exact", "lazy4", "lazy8", "lazy16", "subbatch0.25",
                                   "finite-difference", "lazy4+subbatch0.5+fd"}
    configs = {name: runs.image_config(TINY, "digits", str(tmp_path / name), 0, **fields)
               for name, fields in study.SETTINGS.items()}
    assert {c.resolved("d_norm") for c in configs.values()} == {"batch"}
    combo = configs["lazy4+subbatch0.5+fd"]
    assert (combo.reg_every, combo.reg_fraction, combo.penalty_grad) == (4, 0.5, "finite-difference")
    assert study.CYCLE % 16 == 0
