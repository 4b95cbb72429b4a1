"""Every user error of every subcommand exits 2 naming the option or file (never a traceback); damaged
caches heal; images are scaled by their real bit depth."""

import os
import struct
import zlib

import numpy as np
import pytest
import torch

from fastreg.cli import fid as fid_command
from fastreg.cli import main
from fastreg.metrics import classifier as clf
from fastreg.metrics.sources import load_images

from conftest import train_shared_run

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    return train_shared_run(tmp_path_factory, "digits", data="digits", resolution=8, width=8, z_dim=8, batch_size=16,
                            steps=2, sample_every=1000)


@pytest.mark.parametrize("flags,message", [
    (["--noise", "inf"], "noise: must be a finite non-negative number, got inf"),
    (["--gamma", "inf", "--reg", "r1"], "gamma: must be a finite non-negative number, got inf"),
    (["--lr-d", "nan"], "lr_d: must be a finite non-negative number, got nan"),
    (["--vral-mu-fake=-inf", "--variant", "vral"], "vral_mu_fake: must be a finite number, got -inf"),
])
def test_non_finite_numbers_exit_2_naming_the_field(flags, message, tmp_path, capsys):
    """On main --noise inf passed validation and crashed later with a traceback."""
    assert main(["train", "--data", "ring8", "--model", "mlp", *flags, "--out", str(tmp_path / "r")]) == 2
    assert f"invalid config: {message}" in capsys.readouterr().err


def test_fid_json_is_checked_before_computing(digits_run, tmp_path, capsys, monkeypatch):
    """On main the unwritable --json path failed with a traceback after the FID was computed."""
    def no_computing(*args, **kwargs):
        raise AssertionError("computed the FID before checking --json")

    monkeypatch.setattr(fid_command, "fid_against_data", no_computing)
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    for target, reason in ((tmp_path / "missing" / "x.json", "No such file or directory"),
                           (file / "x.json", "Not a directory")):
        assert main(["fid", str(digits_run), "--json", str(target)]) == 2
        assert f"fastreg fid: --json: cannot write {target} ({reason})" in capsys.readouterr().err
    assert main(["fid", str(digits_run), "--json", str(tmp_path)]) == 2
    assert f"--json: {tmp_path} is a folder" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]  # the probe leaves nothing behind


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_bomb(path, side=20_000):
    """A 20000x20000 grey PNG (400 M pixels) in a few hundred bytes: its rows are zeros, compressed."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    compressor = zlib.compressobj(9)
    rows = b"".join(compressor.compress(b"\0" * (side + 1)) for _ in range(64)) + compressor.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", rows)
                     + png_chunk(b"IEND", b""))


@pytest.mark.parametrize("case", ["text named .png", "truncated png", "decompression bomb"])
def test_an_unreadable_image_exits_2_naming_the_file(case, tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "a.png")
    bad = folder / "b.png"
    if case == "text named .png":
        bad.write_text("not an image\n")
    elif case == "truncated png":
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8)).save(bad)
        bad.write_bytes(bad.read_bytes()[:70])  # cut inside the pixel data
    else:
        write_bomb(bad)
    assert main(["fid", str(folder), "data:digits", "--resolution", "8"]) == 2
    err = capsys.readouterr().err
    want = "is refused as a possible decompression bomb" if case == "decompression bomb" else "is not a readable image"
    assert f"fastreg fid: source: {bad} {want}" in err and "Traceback" not in err


def test_16_bit_pngs_are_scaled_by_their_bit_depth(tmp_path):
    """On main 16-bit grey PNGs were clipped at 255 (99.6% of the pixels at +1)."""
    from PIL import Image

    values = (np.arange(64, dtype=np.int64).reshape(8, 8) * 1000).astype(np.uint16)  # 0 .. 63000
    Image.fromarray(values).save(tmp_path / "deep.png")
    Image.fromarray((values // 257).astype(np.uint8)).save(tmp_path / "flat.png")
    deep, flat = load_images([str(tmp_path / "deep.png"), str(tmp_path / "flat.png")])
    expected = torch.from_numpy(values.astype(np.float32)) * (2 / 65535) - 1
    torch.testing.assert_close(deep[0], expected, rtol=0, atol=1e-6)
    assert (deep < 1).float().mean() > 0.9
    torch.testing.assert_close(deep, flat, rtol=0, atol=2 / 255)  # the 8-bit copy agrees to its precision


def fast_training(monkeypatch):
    real = clf.train_classifier
    monkeypatch.setattr(clf, "train_classifier", lambda images, labels: real(images, labels, steps=3))


@pytest.mark.parametrize("damage", ["truncated", "flipped weight byte"])
def test_a_damaged_classifier_cache_is_rebuilt_with_a_warning_naming_it(damage, tmp_path, monkeypatch):
    """On main a truncated cache made every fid crash, naming no file, and never healed (and a flipped
    byte in its weights loaded silently)."""
    monkeypatch.setenv("FASTREG_CACHE", str(tmp_path))
    fast_training(monkeypatch)
    first = clf.load_or_train_classifier("digits", 8)
    path = first.path
    data = bytearray(open(path, "rb").read())
    if damage == "truncated":
        data = data[:len(data) // 2]
    else:
        data[len(data) // 2] ^= 0x01
    open(path, "wb").write(bytes(data))
    with pytest.warns(UserWarning, match=rf"FID classifier cache {path} is damaged .*training the classifier again"):
        healed = clf.load_or_train_classifier("digits", 8)
    assert healed.trained_now
    again = clf.load_or_train_classifier("digits", 8)  # healed: loads without a warning
    assert not again.trained_now and again.held_out_accuracy == healed.held_out_accuracy


def test_fid_heals_a_damaged_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FASTREG_CACHE", str(tmp_path))
    fast_training(monkeypatch)
    path = clf.load_or_train_classifier("digits", 8).path
    open(path, "wb").write(open(path, "rb").read()[:1000])
    with pytest.warns(UserWarning, match=f"{path} is damaged"):
        assert main(["fid", "--floor", "--data", "digits", "--resolution", "8", "--samples", "50"]) == 0
    assert "real-data floor, digits" in capsys.readouterr().out


def test_damaged_inception_weights_exit_2_naming_the_file(tmp_path, capsys):
    weights = tmp_path / "inception.pth"
    weights.write_bytes(b"PK\x03\x04 not really")
    assert main(["fid", "--floor", "--data", "digits", "--resolution", "8", "--extractor",
                 f"inception:{weights}"]) == 2
    err = capsys.readouterr().err
    assert f"{weights} is damaged" in err and "Traceback" not in err


@pytest.mark.parametrize("argv,message", [
    (["vanishing", "{run}", "--noise", "inf"], "noise: must be a finite number >= 0, got inf"),
    (["histograms", "{run}", "--samples", "0"], "--samples: must be at least 1, got 0"),
    (["histograms", "{run}", "--k", "-1"], "--k: must be at least 0, got -1"),
    (["vanishing", "{run}", "--record-every", "0"], "--record-every: must be at least 1, got 0"),
    (["interpolation", "{run}", "--out", "{file}"], "out: {file} is a file, not a folder"),
])
def test_diagnose_errors_exit_2_naming_the_option(argv, message, digits_run, tmp_path, capsys):
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    fill = {"{run}": str(digits_run), "{file}": str(file)}
    argv = [fill.get(a, a) for a in argv]
    assert main(["diagnose", *argv]) == 2
    err = capsys.readouterr().err
    assert message.replace("{file}", str(file)) in err and "Traceback" not in err
