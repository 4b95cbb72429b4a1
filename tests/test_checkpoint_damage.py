"""Damaged checkpoints are detected whatever the damage (zip CRCs, keys, shapes, random states), a resume
falls back to the newest good one and then trains what a straight run trains; only code is called unsafe."""

import zipfile

import pytest
import torch

from fastreg.cli import main
from fastreg.train.checkpoint import DamagedCheckpointError, UnsafeCheckpointError, latest_checkpoint, load_checkpoint
from fastreg.train.config import TrainConfig
from fastreg.train.trainer import load_latest_state, load_trainer, train
from test_resume import assert_bitwise_equal

pytestmark = pytest.mark.usefixtures("one_thread")

TOY = dict(data="ring8", model="mlp", z_dim=4, batch_size=8, log_every=5, sample_every=1000, ema=0.9, steps=10,
           checkpoint_every=5)
FLIPS_PER_REGION = 12


@pytest.fixture(scope="module")
def run_template(tmp_path_factory):
    """A 10-step toy run with checkpoints at steps 5 and 10 (copied by each test that damages it)."""
    with torch.random.fork_rng(devices=[]):
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        out = tmp_path_factory.mktemp("template") / "run"
        train(TrainConfig(**TOY, out=str(out)))
        torch.set_num_threads(previous)
    return out


def copy_run(template, tmp_path):
    import shutil

    return shutil.copytree(template, tmp_path / "run")


def member_spans(path, pick) -> list[tuple[str, int, int]]:
    """(name, first byte, length) of the stored data of every zip member for which ``pick(name)`` holds."""
    spans = []
    with zipfile.ZipFile(path) as archive, open(path, "rb") as f:
        for info in archive.infolist():
            if not pick(info.filename) or info.file_size == 0:
                continue
            f.seek(info.header_offset + 26)
            name_length, extra_length = (int.from_bytes(f.read(2), "little") for _ in range(2))
            spans.append((info.filename, info.header_offset + 30 + name_length + extra_length, info.file_size))
    return spans


def flip(path, offset: int) -> None:
    data = bytearray(open(path, "rb").read())
    data[offset] ^= 0x5A
    open(path, "wb").write(bytes(data))


def positions(spans, count: int) -> list[int]:
    """``count`` byte positions spread over the spans' data."""
    flat = [(start, length) for _, start, length in spans]
    total = sum(length for _, length in flat)
    out = []
    for k in range(count):
        at = k * total // count
        for start, length in flat:
            if at < length:
                out.append(start + at)
                break
            at -= length
    return out


REGIONS = {"tensor data": lambda name: "/data/" in name, "pickle": lambda name: name.endswith("data.pkl")}


@pytest.mark.parametrize("region", REGIONS)
def test_every_flipped_byte_is_damage_and_the_previous_checkpoint_is_used(region, run_template, tmp_path):
    """On main, 30 of 30 flips in tensor data loaded changed weights, and flips in data.pkl gave an
    'unsafe' refusal, a KeyError or an OverflowError instead of a fallback."""
    run = copy_run(run_template, tmp_path)
    newest = str(run / "checkpoints" / "checkpoint_00000010.pt")
    pristine = open(newest, "rb").read()
    spans = member_spans(newest, REGIONS[region])
    assert spans, region
    for offset in positions(spans, FLIPS_PER_REGION):
        flip(newest, offset)
        with pytest.raises(DamagedCheckpointError, match=r"checkpoint_00000010\.pt is damaged"):
            load_checkpoint(newest)
        with pytest.warns(UserWarning, match=r"checkpoint_00000010\.pt is damaged.*trying the one before it"):
            assert load_latest_state(str(run))["step"] == 5
        open(newest, "wb").write(pristine)
    assert load_latest_state(str(run))["step"] == 10


def test_resume_after_a_flip_trains_what_a_straight_run_trains(run_template, tmp_path):
    """A flip in the newest checkpoint's weights: the resume falls back to step 5, trains 5..10 again and
    ends bit for bit where the straight run ended."""
    run = copy_run(run_template, tmp_path)
    straight = load_checkpoint(str(run_template / "checkpoints" / "checkpoint_00000010.pt"))
    newest = str(run / "checkpoints" / "checkpoint_00000010.pt")
    _, start, length = member_spans(newest, REGIONS["tensor data"])[0]
    flip(newest, start + length // 2)
    with pytest.warns(UserWarning, match="damaged"):
        assert main(["train", "--resume", str(run), "--steps", "10"]) == 0
    resumed = load_checkpoint(latest_checkpoint(str(run)))
    for state in (straight, resumed):
        state["config"].pop("out")
    assert_bitwise_equal(resumed, straight)


def test_a_flipped_pickle_byte_is_never_called_unsafe(run_template, tmp_path):
    """Every single-byte change of data.pkl is damage (a fallback), not 'could run arbitrary code'."""
    run = copy_run(run_template, tmp_path)
    newest = str(run / "checkpoints" / "checkpoint_00000010.pt")
    pristine = open(newest, "rb").read()
    (_, start, length), = member_spans(newest, REGIONS["pickle"])
    for offset in range(start, start + length, max(1, length // 60)):
        flip(newest, offset)
        with pytest.raises(DamagedCheckpointError) as caught:
            load_checkpoint(newest)
        assert not isinstance(caught.value, UnsafeCheckpointError)
        open(newest, "wb").write(pristine)


def test_code_in_an_intact_file_is_still_refused_as_unsafe(tmp_path):
    from test_checkpoint import write_malicious_checkpoint

    marker = tmp_path / "pwned"
    path = write_malicious_checkpoint(str(tmp_path / "run"), marker)
    with pytest.raises(UnsafeCheckpointError, match="could run arbitrary code"):
        load_checkpoint(path)
    assert not marker.exists()


def damage_cases():
    """What a CRC-intact checkpoint can still get wrong, and the problem the check names."""

    def python_state_overflow(s):
        s["rng"]["python"]["state"][0] = 2**64  # random.setstate: OverflowError on main

    return {
        "missing key": (lambda s: s.pop("opt_d"), "no opt_d"),
        "wrong shape": (lambda s: s["G"].update({k: torch.zeros(3) for k in list(s["G"])[:1]}), "has shape"),
        "extra network": (lambda s: s.update(lens={}), "has a lens"),
        "optimizer buffer": (lambda s: [e.pop("exp_avg") for e in s["opt_g"]["state"].values()], "no exp_avg"),
        "python random state": (python_state_overflow, "rng.python's state is not 625 words"),
        "step not the file's": (lambda s: s.update(step=7), "holds step 7, its name says 10"),
        "config of other networks": (lambda s: s["config"].update(z_dim=9), r"G\.\S+ has shape"),
        "config that does not parse": (lambda s: s["config"].update(colour="red"), "config does not parse"),
    }


@pytest.mark.parametrize("case", damage_cases())
def test_an_intact_file_that_is_no_complete_state_is_damaged(case, run_template):
    from fastreg.train.state_check import check_training_state

    change, problem = damage_cases()[case]
    path = str(run_template / "checkpoints" / "checkpoint_00000010.pt")
    state = load_checkpoint(path)
    check_training_state(state, path)  # the real one passes
    change(state)
    with pytest.raises(DamagedCheckpointError, match=rf"checkpoint_00000010\.pt is damaged: .*({problem})"):
        check_training_state(state, path)


def test_fid_and_diagnose_fall_back_too(run_template, tmp_path):
    run = copy_run(run_template, tmp_path)
    newest = run / "checkpoints" / "checkpoint_00000010.pt"
    newest.write_bytes(newest.read_bytes()[:-100])
    with pytest.warns(UserWarning, match="damaged"):
        assert load_trainer(str(run)).step == 5


def test_every_checkpoint_damaged_exits_2_naming_the_files(run_template, tmp_path, capsys):
    run = copy_run(run_template, tmp_path)
    for path in (run / "checkpoints").iterdir():
        path.write_bytes(b"PK\x03\x04" + path.read_bytes()[4:2000])
    with pytest.warns(UserWarning, match="checkpoint_00000010.pt is damaged"):
        assert main(["train", "--resume", str(run), "--steps", "20"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint_00000005.pt is damaged" in err and "no checkpoint of" in err and "is intact" in err
    assert "Traceback" not in err
