"""Bad data and config input: a non-zero exit and a message naming the input, never a traceback."""

import os
import subprocess
import sys

import pytest
import torch

from fastreg.cli import main
from fastreg.train import build
from fastreg.train.config import ConfigError, TrainConfig
from fastreg.train.trainer import train

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "fastreg", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"})


def test_missing_data_path_exits_2_naming_it(tmp_path):
    missing = tmp_path / "no-such-folder"
    result = run_cli("train", "--data", "imagefolder", "--data-root", str(missing), "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"invalid config: data_root: no 'imagefolder' data at {missing}" in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv,message", [
    (["--data", "mnist", "--data-root", "{tmp}/nowhere"],
     "invalid config: data_root: no 'mnist' data at {tmp}/nowhere: MNIST not found: looked in {tmp}/nowhere/MNIST/raw"),
    (["--config", "{tmp}/missing.yaml"], "invalid config: config: no such file {tmp}/missing.yaml"),
    (["--resume", "{tmp}/no-run"], "resume: run folder {tmp}/no-run does not exist"),
    (["--data", "digits", "--batch-size", "5000"], "invalid config: batch_size: 5000 exceeds the dataset's 1797"),
    (["--resolution", "128"], "invalid config: resolution: must be a power of two from 8 to 64, got 128"),
    (["--device", "tpu:0"], "invalid config: device: must be cpu, cuda, cuda:N or auto, got 'tpu:0'"),
])
def test_bad_input_exits_2_naming_it(argv, message, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["train", *argv, "--out", str(tmp_path / "run")]) == 2
    assert message.replace("{tmp}", str(tmp_path)) in capsys.readouterr().err


def test_resolution_the_models_do_not_support_names_resolution():
    with pytest.raises(ConfigError, match=r"^resolution: data 'digits' gives 28x28 images; the dcgan models take "
                                          r"square images of side 8, 16, 32, 64"):
        build.networks(TrainConfig(data="digits"), (1, 28, 28))
    with pytest.raises(ConfigError, match=r"^resolution: data 'digits' gives 16x32 images"):
        build.networks(TrainConfig(data="digits", model="resnet"), (3, 16, 32))


def write_rgb_folder(root, n=16, side=8):
    from PIL import Image

    folder = root / "class0"
    folder.mkdir(parents=True)
    generator = torch.Generator().manual_seed(0)
    for i in range(n):
        pixels = torch.randint(0, 256, (side, side, 3), generator=generator, dtype=torch.uint8).numpy()
        Image.fromarray(pixels, "RGB").save(folder / f"{i}.png")
    return root


def test_resume_with_other_data_names_data(tmp_path):
    """A run trained on 1-channel digits, resumed on 3-channel images: exit 2 naming data as fixed by the run."""
    run = tmp_path / "run"
    train(TrainConfig(data="digits", resolution=8, width=8, z_dim=8, batch_size=8, steps=2, out=str(run)))
    folder = write_rgb_folder(tmp_path / "rgb")
    result = run_cli("train", "--resume", str(run), "--steps", "4", "--data", "imagefolder", "--data-root",
                     str(folder))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"invalid config: data: fixed by the run in {run} (it has 'digits', the resume asks for 'imagefolder')" \
        in result.stderr


def test_a_checkpoint_of_other_data_names_data(tmp_path):
    """The sample-shape check behind a resume: a checkpoint of 1-channel networks, 3-channel data."""
    from fastreg.train.trainer import Trainer

    folder = write_rgb_folder(tmp_path / "rgb")
    trainer = Trainer(TrainConfig(data="imagefolder", data_root=str(folder), resolution=8, width=8, z_dim=8,
                                  batch_size=8, out=str(tmp_path / "run")))
    with pytest.raises(ConfigError, match=r"^data: the checkpoint's networks take samples of shape \(1, 8, 8\), "
                                          r"but data 'imagefolder' gives \(3, 8, 8\) \(different channels\)"):
        trainer.load_state_dict({"sample_shape": [1, 8, 8]})


def test_resume_with_other_networks_names_the_field(tmp_path, capsys):
    """A changed architecture field on resume names the field as fixed by the run (on main: a truncated
    state-dict error)."""
    run = tmp_path / "run"
    train(TrainConfig(data="ring8", model="mlp", z_dim=4, batch_size=8, steps=2, out=str(run)))
    assert main(["train", "--resume", str(run), "--z-dim", "6", "--steps", "3"]) == 2
    assert f"invalid config: z_dim: fixed by the run in {run} (it has 4, the resume asks for 6)" in \
        capsys.readouterr().err
