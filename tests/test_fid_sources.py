"""`fastreg fid` between two sources: image folders, data:<dataset> and run folders."""

import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from fastreg import data
from fastreg.metrics import kid
from fastreg.metrics.fid import mmd2_unbiased
from fastreg.metrics.sources import compare, conform, load_images, open_source
from fastreg.train.config import TrainConfig
from fastreg.train.metrics_log import read_metrics
from fastreg.train.trainer import train


def write_pngs(folder, images: torch.Tensor, rgb: bool = False) -> None:
    """[N, 1, R, R] in [-1, 1] -> 8-bit PNG files (grey, or the grey copied into R, G and B)."""
    os.makedirs(folder, exist_ok=True)
    pixels = ((images[:, 0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    for i, p in enumerate(pixels):
        image = Image.fromarray(np.stack([p] * 3, -1) if rgb else p, "RGB" if rgb else "L")
        image.save(os.path.join(folder, f"{i:04d}.png"))


def run_cli(*args):
    env = {k: v for k, v in os.environ.items() if k != "FASTREG_INCEPTION_WEIGHTS"}
    return subprocess.run([sys.executable, "-m", "fastreg", *args], capture_output=True, text=True,
                          env={**env, "PYTHONPATH": os.getcwd()})


@pytest.fixture(scope="module")
def digits8():
    return data.get_dataset("digits", resolution=8).images


def test_kid_of_one_full_subset_equals_the_brute_force_sum():
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(6, 3, generator=g, dtype=torch.float64), torch.randn(6, 3, generator=g, dtype=torch.float64)

    def k(a, b):
        return (float(a @ b) / 3 + 1) ** 3

    pairs = list(itertools.permutations(range(6), 2))
    brute = (sum(k(x[i], x[j]) for i, j in pairs) / 30 + sum(k(y[i], y[j]) for i, j in pairs) / 30
             - 2 * sum(k(a, b) for a in x for b in y) / 36)
    assert kid(x, y, subset_size=6).mean == pytest.approx(brute, rel=1e-12) == mmd2_unbiased(x, y)


def test_image_folder_loads_back_what_was_written(tmp_path, digits8):
    write_pngs(tmp_path / "grey", digits8[:20])
    write_pngs(tmp_path / "rgb", digits8[:20], rgb=True)
    grey = load_images(sorted(str(p) for p in (tmp_path / "grey").iterdir()))
    rgb = load_images(sorted(str(p) for p in (tmp_path / "rgb").iterdir()))
    assert grey.shape == (20, 1, 8, 8) and rgb.shape == (20, 3, 8, 8)
    assert (grey - digits8[:20]).abs().max() <= 1 / 255 + 1e-6  # 8-bit rounding only
    torch.testing.assert_close(conform(rgb, 1, 8), grey, rtol=0, atol=1e-6)  # RGB averaged back to grey
    assert conform(grey, 3, 16).shape == (20, 3, 16, 16)


def test_a_folder_holds_more_images_than_open_files_allowed(tmp_path, digits8):
    import resource

    write_pngs(tmp_path / "many", digits8[:300])
    write_pngs(tmp_path / "mixed", digits8[:2], rgb=True)
    write_pngs(tmp_path / "mixed" / "grey", digits8[2:4])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(128, hard), hard))
    try:
        images = load_images(sorted(str(p) for p in (tmp_path / "many").iterdir()))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert images.shape == (300, 1, 8, 8) and (images - digits8[:300]).abs().max() <= 1 / 255 + 1e-6
    mixed = open_source(str(tmp_path / "mixed"), 0)  # RGB and grey files: all RGB, grey copied to each channel
    assert mixed.channels == 3 and mixed.size == 4
    (batch,) = list(mixed.batches(4))
    torch.testing.assert_close(batch[:, 0], batch[:, 2], rtol=0, atol=0)


def test_a_folder_against_itself_and_against_its_dataset(tmp_path, digits8):
    write_pngs(tmp_path / "all", digits8)
    same = compare(open_source(str(tmp_path / "all"), 0), open_source(str(tmp_path / "all"), 0), extractor="raw")
    assert abs(same["fid/raw"]) < 1e-6 and same["samples_a"] == same["samples_b"] == len(digits8)
    write_pngs(tmp_path / "half", digits8[:900])
    folder, real = open_source(str(tmp_path / "half"), 0), open_source("data:digits", 0, resolution=8)
    result = compare(folder, real, extractor="classifier:digits")
    assert result["extractor"] == "classifier:digits" and result["resolution"] == 8
    assert 0 < result["fid/classifier:digits"] < 5 and result["fid_residue/classifier:digits"] >= 0
    noise = torch.rand(900, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    write_pngs(tmp_path / "noise", noise)
    far = compare(open_source(str(tmp_path / "noise"), 0), real, extractor="classifier:digits")
    assert far["fid/classifier:digits"] > 10 * result["fid/classifier:digits"]


def test_sources_are_checked(tmp_path):
    with pytest.raises(FileNotFoundError, match="^source: "):
        open_source(str(tmp_path / "missing"), 10)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="^source: no image files"):
        open_source(str(tmp_path / "empty"), 10)
    with pytest.raises(ValueError, match="^source: 'data:ring8' must name an image dataset"):
        open_source("data:ring8", 10)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fid_sources") / "run"
    return train(TrainConfig(data="digits", resolution=8, width=8, z_dim=8, steps=4, batch_size=16, log_every=2,
                             sample_every=1000, checkpoint_every=4, ema=0.5, eval_every=4, eval_samples=64,
                             out=str(out)))


def test_cli_run_against_data_reproduces_the_logged_fid_and_a_run_against_itself_is_zero(digits_run, tmp_path):
    (logged,) = [r for r in read_metrics(digits_run) if "fid/classifier:digits" in r]
    seed = str(TrainConfig().seed)
    result = run_cli("fid", "data:digits", digits_run, "--samples", "64", "--seed", seed,  # the Evaluator's order
                     "--json", str(tmp_path / "a.json"))
    assert result.returncode == 0, result.stderr
    (values,) = json.loads((tmp_path / "a.json").read_text()).values()
    assert values["fid/classifier:digits"] == pytest.approx(logged["fid/classifier:digits"], rel=1e-6)
    assert values["kid/classifier:digits"] == pytest.approx(logged["kid/classifier:digits"], rel=1e-6)
    assert "FID[classifier:digits]" in result.stdout
    # a log (stdout not a terminal) gets one line per embedded side, with its count
    assert "fastreg: classifier:digits features of data data:digits: 1797 images (" in result.stdout
    assert "fastreg: classifier:digits features of " in result.stdout.split("data:digits: 1797 images")[1]
    itself = run_cli("fid", digits_run, digits_run, "--samples", "64", "--json", str(tmp_path / "b.json"))
    assert itself.returncode == 0, itself.stderr
    (values,) = json.loads((tmp_path / "b.json").read_text()).values()
    assert abs(values["fid/classifier:digits"]) < 1e-6


def test_cli_errors_name_the_argument(tmp_path, digits8):
    write_pngs(tmp_path / "a", digits8[:10])
    no_dataset = run_cli("fid", str(tmp_path / "a"), str(tmp_path / "a"))
    assert no_dataset.returncode == 2 and "extractor: neither source names a dataset" in no_dataset.stderr
    three = run_cli("fid", "a", "b", "c")
    assert three.returncode == 2 and "sources:" in three.stderr
    not_a_run = run_cli("fid", str(tmp_path / "a"))
    assert not_a_run.returncode == 2 and "is not a run folder" in not_a_run.stderr
