"""Fault injection, round two (issue 28): checkpoints and cache files that are exactly what they claim.

- single-bit flips of a checkpoint's zip structure (local headers, central directory, end record), a fixed
  random sample of them in CI (``FASTREG_FLIP_SAMPLES=N``: N of them; ``FASTREG_FULL_FLIP_SCAN=1``: every bit,
  about 83,000 for the toy checkpoint's 63 members), each detected as damage, with the
  directory bit 0x10 of every member's external attributes always among them (on main, 53 flips of a
  scan of 58,000 loaded uninitialised memory, all of this bit);
- checkpoints copied in from another run (another variant and regularizer, another width): foreign, skipped;
- the same bit in the FID classifier's cache file: damaged, trained again.
"""

import json
import os
import random
import shutil
import struct
import zipfile

import pytest
import torch

from fastreg.cli import main
from fastreg.train.checkpoint import DamagedCheckpointError, latest_checkpoint, load_checkpoint
from fastreg.train.config import TrainConfig, load_yaml
from fastreg.train.manifest import ForeignCheckpointError, manifest_path
from fastreg.train.runs import training_state_of
from fastreg.train.trainer import load_latest_state, train

pytestmark = pytest.mark.usefixtures("one_thread")

TOY = dict(data="ring8", model="mlp", z_dim=4, batch_size=8, log_every=5, sample_every=1000, ema=0.9, steps=10,
           checkpoint_every=5)
SAMPLED_FLIPS = 160
DIRECTORY_BIT = 0x10  # MS-DOS "directory" attribute, byte 38 of a central directory record


def quiet_train(**fields):
    with torch.random.fork_rng(devices=[]):
        return train(TrainConfig(**{**TOY, **fields}))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three toy runs: ``own`` (ns, checkpoints 5 and 10), and two others that reach step 15."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("runs")
    quiet_train(out=str(root / "own"))
    quiet_train(out=str(root / "lsgan_r1"), variant="lsgan", reg="r1", steps=15)
    quiet_train(out=str(root / "width4"), width=4, steps=15)
    torch.set_num_threads(previous)
    return root


def copy_run(runs, tmp_path, name="own"):
    return shutil.copytree(runs / name, tmp_path / name)


def structure_offsets(path) -> list[tuple[int, str]]:
    """(byte offset, what) of every byte of the zip structure: local headers, central directory, end record."""
    data = open(path, "rb").read()
    out = []
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            name_length, extra_length = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
            out += [(info.header_offset + k, f"local header of {info.filename}")
                    for k in range(30 + name_length + extra_length)]
    start = data.rfind(b"PK\x05\x06")
    directory = struct.unpack("<I", data[start + 16:start + 20])[0]
    out += [(k, "central directory") for k in range(directory, start)]
    out += [(k, "end record") for k in range(start, len(data))]
    return out


def central_records(path) -> list[int]:
    """Offsets of the central directory's records."""
    data = open(path, "rb").read()
    end = data.rfind(b"PK\x05\x06")
    at, out = struct.unpack("<I", data[end + 16:end + 20])[0], []
    while data[at:at + 4] == b"PK\x01\x02":
        out.append(at)
        n, m, k = struct.unpack("<HHH", data[at + 28:at + 34])
        at += 46 + n + m + k
    return out


def flip_bit(path, offset: int, bit: int) -> None:
    data = bytearray(open(path, "rb").read())
    data[offset] ^= bit
    open(path, "wb").write(bytes(data))


def test_the_directory_bit_of_every_member_is_damage_and_the_previous_checkpoint_is_used(runs, tmp_path):
    """On main the CRCs pass, torch reads the member as a folder and loads uninitialised memory, silently."""
    run = copy_run(runs, tmp_path)
    newest = str(run / "checkpoints" / "checkpoint_00000010.pt")
    pristine = open(newest, "rb").read()
    records = central_records(newest)
    assert len(records) >= 5
    for record in records:
        flip_bit(newest, record + 38, DIRECTORY_BIT)
        with pytest.raises(DamagedCheckpointError, match=r"checkpoint_00000010\.pt is damaged: member .* is not a "
                                                         r"regular file"):
            load_checkpoint(newest)
        with pytest.warns(UserWarning, match=r"checkpoint_00000010\.pt is damaged.*trying the one before it"):
            assert load_latest_state(str(run))["step"] == 5
        open(newest, "wb").write(pristine)
    assert load_latest_state(str(run))["step"] == 10


def test_sampled_single_bit_flips_of_the_zip_structure_are_all_detected(runs, tmp_path):
    """Each flip, wherever it lands in the structure, is damage: a CRC, a member's type, or the manifest's
    SHA-256 catches it (never a silent load of other weights)."""
    run = copy_run(runs, tmp_path)
    newest = str(run / "checkpoints" / "checkpoint_00000010.pt")
    pristine = open(newest, "rb").read()
    candidates = [(offset, 1 << bit) for offset, _ in structure_offsets(newest) for bit in range(8)]
    if os.environ.get("FASTREG_FULL_FLIP_SCAN") != "1":
        count = int(os.environ.get("FASTREG_FLIP_SAMPLES", SAMPLED_FLIPS))
        candidates = random.Random(28).sample(candidates, min(count, len(candidates)))
    candidates += [(record + 38, DIRECTORY_BIT) for record in central_records(newest)]
    silent = []
    for offset, bit in candidates:
        flip_bit(newest, offset, bit)
        try:
            training_state_of(newest)
            silent.append((offset, bit))
        except DamagedCheckpointError:
            pass
        open(newest, "wb").write(pristine)
    assert silent == [], f"{len(silent)} of {len(candidates)} flips loaded without a complaint: {silent[:5]}"
    assert training_state_of(newest)["step"] == 10


@pytest.mark.parametrize("other", ["lsgan_r1", "width4"])
@pytest.mark.parametrize("with_manifest", [True, False], ids=["with its manifest", "alone"])
def test_a_checkpoint_copied_from_another_run_is_foreign_and_skipped(other, with_manifest, runs, tmp_path, capsys):
    """On main: exit 0, no warning, and config.yaml then said the other run's variant/reg/width."""
    run = copy_run(runs, tmp_path)
    foreign = runs / other / "checkpoints" / "checkpoint_00000015.pt"
    shutil.copy(foreign, run / "checkpoints")
    if with_manifest:
        shutil.copy(manifest_path(str(foreign)), run / "checkpoints")
    copied = str(run / "checkpoints" / "checkpoint_00000015.pt")
    kind = ForeignCheckpointError if with_manifest else DamagedCheckpointError
    word = "is foreign: it was written by run" if with_manifest else "is damaged or foreign: it has no manifest"
    with pytest.raises(kind, match=rf"checkpoint_00000015\.pt {word}"):
        training_state_of(copied)
    with pytest.warns(UserWarning, match=rf"checkpoint_00000015\.pt {word}.*trying the one before it"):
        assert main(["train", "--resume", str(run), "--steps", "20"]) == 0
    resumed = load_yaml(str(run / "config.yaml"))
    assert (resumed.variant, resumed.reg, resumed.width) == ("ns", "none", 64)
    newest = latest_checkpoint(str(run))
    assert newest.endswith("checkpoint_00000020.pt")
    assert load_checkpoint(newest)["config"]["variant"] == "ns"


def test_a_checkpoint_whose_fixed_fields_are_not_the_runs_is_foreign(runs, tmp_path):
    """Same run id, but the run's identity says other fixed fields (e.g. a folder whose config was swapped)."""
    run = copy_run(runs, tmp_path)
    identity_file = run / "run_identity.json"
    identity = json.loads(identity_file.read_text())
    identity["fixed_config_sha256"] = "0" * 64
    identity_file.write_text(json.dumps(identity))
    with pytest.raises(ForeignCheckpointError, match="fixed config fields"):
        training_state_of(str(run / "checkpoints" / "checkpoint_00000010.pt"))


def test_a_copied_run_folder_keeps_its_identity(runs, tmp_path):
    """Branching a run (copy the folder, resume the copy) is allowed: the copy's checkpoints stay its own."""
    run = copy_run(runs, tmp_path)
    assert main(["train", "--resume", str(run), "--steps", "15"]) == 0
    assert load_latest_state(str(run))["step"] == 15


def test_the_directory_bit_in_the_classifier_cache_retrains_it(tmp_path, monkeypatch):
    """On main: FID about 7.6e51, different on every call."""
    from fastreg.metrics import classifier as clf

    monkeypatch.setenv("FASTREG_CACHE", str(tmp_path / "cache"))
    real_train = clf.train_classifier
    monkeypatch.setattr(clf, "train_classifier", lambda x, y: real_train(x, y, steps=5))
    first = clf.load_or_train_classifier("digits", 8)
    again = clf.load_or_train_classifier("digits", 8)
    assert not again.trained_now
    pristine = open(first.path, "rb").read()
    for record in central_records(first.path):
        flip_bit(first.path, record + 38, DIRECTORY_BIT)
        with pytest.warns(UserWarning, match="is damaged.*not a regular file.*training the classifier again"):
            healed = clf.load_or_train_classifier("digits", 8)
        assert healed.trained_now
        assert open(first.path, "rb").read() == pristine  # seeded: the same classifier again
    flip_bit(first.path, central_records(first.path)[0] + 20, 0x01)  # a member's compressed size
    with pytest.warns(UserWarning, match="is damaged"):
        assert clf.load_or_train_classifier("digits", 8).trained_now


def test_a_classifier_cache_without_its_manifest_or_of_another_key_is_retrained(tmp_path, monkeypatch):
    from fastreg.metrics import classifier as clf

    monkeypatch.setenv("FASTREG_CACHE", str(tmp_path / "cache"))
    real_train = clf.train_classifier
    monkeypatch.setattr(clf, "train_classifier", lambda x, y: real_train(x, y, steps=5))
    first = clf.load_or_train_classifier("digits", 8)
    os.remove(clf.manifest_path(first.path))
    with pytest.warns(UserWarning, match="has no manifest"):
        assert clf.load_or_train_classifier("digits", 8).trained_now
    manifest = json.load(open(clf.manifest_path(first.path)))
    json.dump({**manifest, "resolution": 16}, open(clf.manifest_path(first.path), "w"))
    with pytest.warns(UserWarning, match="manifest was written for"):
        assert clf.load_or_train_classifier("digits", 8).trained_now


def test_a_folder_in_place_of_the_classifier_cache_heals_and_temporaries_do_not_pile_up(tmp_path, monkeypatch):
    """On main a folder at the cache path failed every call, and each left a ``.tmp`` file behind."""
    from fastreg.metrics import classifier as clf

    monkeypatch.setenv("FASTREG_CACHE", str(tmp_path / "cache"))
    real_train = clf.train_classifier
    monkeypatch.setattr(clf, "train_classifier", lambda x, y: real_train(x, y, steps=5))
    path = clf.load_or_train_classifier("digits", 8).path
    os.remove(path)
    os.makedirs(os.path.join(path, "x"))
    stale = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.999999999.tmp")  # a dead writer's
    open(stale, "wb").write(b"torn")
    with pytest.warns(UserWarning, match="is a folder"):
        assert clf.load_or_train_classifier("digits", 8).trained_now
    assert os.path.isfile(path)
    assert not clf.load_or_train_classifier("digits", 8).trained_now
    assert [n for n in os.listdir(os.path.dirname(path)) if n.endswith(".tmp")] == []
