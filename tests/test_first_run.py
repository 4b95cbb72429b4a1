"""A new user's first run (issue 27): --threads on every command, the FID classifier keyed by its data's content
with its held-out accuracy on every FID, --download / --data-root with CLI-worded errors, no "nan" strings."""

import json
import os
import struct
import subprocess
import sys

import pytest
import torch

from fastreg import data
from fastreg.cli import build_parser, main
from fastreg.metrics import classifier as clf
from fastreg.metrics.extractors import make_extractor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_fake_mnist(root, n: int, seed: int) -> None:
    """MNIST's four IDX files under root/MNIST/raw: ``n`` 28x28 images of class-dependent bars, labels 0..9."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = torch.zeros(n, 28, 28, dtype=torch.uint8)
    for i, c in enumerate(labels.tolist()):
        row = 2 + 2 * c + int(torch.randint(0, 2, (), generator=generator))
        images[i, row:row + 3, 4:24] = 255
    raw = os.path.join(root, "MNIST", "raw")
    os.makedirs(raw, exist_ok=True)
    for split in ("train", "t10k"):
        with open(os.path.join(raw, f"{split}-images-idx3-ubyte"), "wb") as f:
            f.write(struct.pack(">IIII", 2051, n, 28, 28) + images.numpy().tobytes())
        with open(os.path.join(raw, f"{split}-labels-idx1-ubyte"), "wb") as f:
            f.write(struct.pack(">II", 2049, n) + labels.to(torch.uint8).numpy().tobytes())


@pytest.mark.parametrize("command", [["train"], ["demo"], ["experiment", "all"], ["fid", "runs/x"],
                                     ["diagnose", "all", "runs/x"], ["diagnose", "vanishing", "runs/x"]])
def test_every_training_or_evaluating_command_takes_threads_default_one(command):
    assert build_parser().parse_args(command).threads == 1
    assert build_parser().parse_args([*command, "--threads", "3"]).threads == 3


def test_threads_below_one_is_refused_naming_the_flag(capsys):
    assert main(["train", "--threads", "0", "--out", "/nonexistent/x"]) == 2
    assert "fastreg train: --threads: must be at least 1, got 0" in capsys.readouterr().err


def test_threads_sets_torch_intra_op_threads(tmp_path):
    script = ("import torch, fastreg.cli.options as o, argparse; "
              "o.apply_threads(argparse.Namespace(threads=2)); print(torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "2"


def test_classifier_of_one_root_is_not_reused_for_another(tmp_path, monkeypatch):
    """A classifier trained on one MNIST root (here 200 digits) must not serve another root's MNIST (300): the
    cache is keyed by the data's content; the same root again loads it. make_extractor honours root= too."""
    monkeypatch.setenv("FASTREG_CACHE", str(tmp_path / "cache"))
    small, other = tmp_path / "small", tmp_path / "other"
    write_fake_mnist(small, 200, seed=0)
    write_fake_mnist(other, 300, seed=1)
    trained = []
    real_train = clf.train_classifier

    def quick_train(images, labels):
        trained.append(len(images))
        return real_train(images, labels, steps=30)

    monkeypatch.setattr(clf, "train_classifier", quick_train)
    first = make_extractor("classifier:mnist", resolution=8, root=str(small))
    assert trained == [160] and first.classifier.trained_now            # 80% of 200 trained on
    second = make_extractor("classifier:mnist", resolution=8, root=str(other))
    assert trained == [160, 240] and second.classifier.trained_now      # another root: trained again
    assert first.classifier.data_hash != second.classifier.data_hash
    assert first.classifier.path != second.classifier.path
    again = make_extractor("classifier:mnist", data="digits", resolution=8, root=str(small))
    assert trained == [160, 240] and not again.classifier.trained_now   # the same data: loaded
    assert again.classifier.held_out_accuracy == first.classifier.held_out_accuracy
    assert json.dumps(first.classifier.held_out_accuracy)  # a plain float


def test_a_cache_file_of_other_data_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTREG_CACHE", str(tmp_path / "cache"))
    write_fake_mnist(tmp_path / "a", 100, seed=0)
    monkeypatch.setattr(clf, "TRAIN_STEPS", 10)
    real_train = clf.train_classifier
    monkeypatch.setattr(clf, "train_classifier", lambda x, y: real_train(x, y, steps=10))
    result = clf.load_or_train_classifier("mnist", 8, root=str(tmp_path / "a"))
    state = torch.load(result.path, weights_only=True)
    state["data_hash"] = "0" * 16
    torch.save(state, result.path)
    with pytest.warns(UserWarning, match="trained on data of hash 0000000000000000"):
        healed = clf.load_or_train_classifier("mnist", 8, root=str(tmp_path / "a"))
    assert healed.trained_now


def test_every_classifier_fid_carries_its_held_out_accuracy(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FASTREG_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "fid.json"
    assert main(["fid", "--floor", "--data", "digits", "--resolution", "8", "--samples", "200",
                 "--json", str(out)]) == 0
    printed = capsys.readouterr()
    result = json.loads(out.read_text())["real-data floor: digits"]
    accuracy = result["classifier_accuracy/classifier:digits"]
    assert 0.9 < accuracy <= 1 and result["classifier_held_out_count"] == 359
    assert f"(classifier held-out accuracy {accuracy:.1%})" in printed.out
    assert "training the FID classifier of digits at 8x8 (1438 images" in printed.err  # no silent gap
    assert f"{accuracy:.1%} accuracy on 359 held-out images" in printed.err


def test_missing_data_error_names_the_cli_flags(tmp_path):
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.get_dataset("mnist", root=tmp_path)
    message = str(info.value)
    assert "--download" in message and "--data-root" in message and "FASTREG_DATA" in message


def test_experiment_takes_data_root_and_download(tmp_path, monkeypatch):
    args = build_parser().parse_args(["experiment", "roth", "--data", "mnist", "--data-root", str(tmp_path),
                                      "--download"])
    assert args.data_root == str(tmp_path) and args.download
    assert build_parser().parse_args(["train", "--download"]).download


def test_train_download_fetches_before_training(tmp_path, monkeypatch):
    """--download calls get_dataset(download=True) once, with the config's root and resolution; a failed download
    is a user error (status 2) naming --download."""
    from fastreg.cli import train as train_cli

    calls = []

    def fake_get(name, resolution=None, root=None, download=False, **options):
        calls.append((name, resolution, root, download))
        raise RuntimeError("no network")

    monkeypatch.setattr(data, "get_dataset", fake_get)
    with pytest.raises(Exception, match="^download: could not download 'mnist' into .*: no network"):
        train_cli.download("mnist", str(tmp_path), 32)
    assert calls == [("mnist", 32, str(tmp_path), True)]
    train_cli.download("digits", None)  # nothing to download
    assert len(calls) == 1


def test_unregularized_runs_write_no_nan_string(tmp_path):
    from fastreg.train.config import TrainConfig
    from fastreg.train.trainer import Trainer

    out = tmp_path / "run"
    Trainer(TrainConfig(data="ring8", model="mlp", steps=4, log_every=2, batch_size=16, out=str(out),
                        sample_every=4, checkpoint_every=4)).train()
    text = (out / "metrics.jsonl").read_text()
    assert '"nan"' not in text
    records = [json.loads(line) for line in text.splitlines()]
    assert all("penalty" not in r for r in records) and any("d_loss" in r for r in records)


@pytest.mark.parametrize("name,expected", [
    ("roth-dcgan", {"variant": "ns", "reg": "roth", "gamma": 2.0, "gamma_anneal": 0.01, "d_norm": "batch",
                    "betas": (0.5, 0.999), "lr_d": 2e-4, "n_critic": 1, "reg_every": 1}),
    ("roth-dcgan-lazy8", {"variant": "ns", "reg": "roth", "gamma": 2.0, "gamma_anneal": 0.01, "d_norm": "batch",
                          "betas": (0.5, 0.999), "lr_d": 2e-4, "n_critic": 1, "reg_every": 8}),
    ("wgan-gp", {"variant": "wgan-gp", "reg": "gp", "gamma": 10.0, "n_critic": 5, "betas": (0.0, 0.9),
                 "lr_d": 1e-4, "d_norm": "none"}),
    ("r1", {"variant": "ns", "reg": "r1", "gamma": 10.0, "betas": (0.0, 0.99), "lr_d": 1e-4, "d_norm": "none"})])
def test_presets_load_validate_and_are_read_by_config(name, expected):
    from fastreg.cli import config_from_args
    from fastreg.cli.train import presets

    assert set(presets()) == {"roth-dcgan", "roth-dcgan-lazy8", "wgan-gp", "r1"}
    config = config_from_args(build_parser().parse_args(["train", "--config", name, "--steps", "7"]))
    assert {k: getattr(config, k) for k in expected} == expected
    assert config.steps == 7 and config.eval_every == 500  # flags on top; every preset evaluates
    readme = open(os.path.join(ROOT, "README.md")).read()
    assert f"--config {name}" in readme


def test_setup_py_ends_without_sys_exit():
    text = open(os.path.join(ROOT, "setup.py")).read().rstrip()
    assert not text.endswith("sys.exit(0)")
