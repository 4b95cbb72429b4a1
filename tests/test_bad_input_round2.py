"""Bad input, round two (issue 28): every case below was a traceback (exit 1) or was silently accepted on main.

Config fields are type-checked from the dataclass (YAML and flags alike), data files that do not decode
are named, the device is validated, and the smaller points: fid's resolution, diagnose and resume on a
folder that is no run, --resume FILE, damaged checkpoints and --keep-checkpoints, plots on odd records,
grad_penalty's target, D's output shape, and the finite-difference penalty on a D with dropout.
"""

import copy
import json
import os
import shutil

import pytest
import torch
import torch.nn as nn

from fastreg.cli import main
from fastreg.train.checkpoint import list_checkpoints, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

TOY_FLAGS = ["--data", "ring8", "--model", "mlp", "--z-dim", "4", "--batch-size", "8", "--steps", "2"]


def fails_cleanly(argv, capsys, *needles) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


YAML_CASES = {
    "betas: 0.5": "betas: must be a list of two numbers or null, got 0.5",
    "betas: abc": "betas: must be a list of two numbers or null, got 'abc'",
    "betas: {a: 1}": "betas: must be a list of two numbers or null, got {'a': 1}",
    "betas: [0.5, x]": "betas: must be a list of two numbers",
    "out: 5": "out: must be a string, got 5",
    "device: [1]": "device: must be a string, got [1]",
    "data: 5": "data: must be a string, got 5",
    "steps: 2.5": "steps: must be an integer, got 2.5",
    "lens: yes please": "lens: must be true or false, got 'yes please'",
    "lr_d: 1e-4": "lr_d: must be a number or null, got '1e-4' (a string: YAML reads a number such as 1e-4 as text",
    "seed: 1180591620717411303424": "seed: must be an integer from 0 to 2**63 - 2",
}


@pytest.mark.parametrize("line", YAML_CASES)
def test_a_yaml_field_of_the_wrong_type_names_the_field(line, tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text(line + "\n")
    fails_cleanly(["train", "--config", str(path), "--out", str(tmp_path / "r")], capsys, YAML_CASES[line])
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("flags, message", [
    (["--seed", "1180591620717411303424"], "seed: must be an integer from 0 to 2**63 - 2"),
    (["--seed", "-1"], "seed: must be an integer from 0"),
    (["--device", "cpu:7"], "device: must be cpu, cuda, cuda:N or auto, got 'cpu:7'"),
    (["--device", "tpu"], "device: must be cpu, cuda, cuda:N or auto"),
])
def test_bad_flags_are_refused_before_anything_is_written(flags, message, tmp_path, capsys):
    """On main the seed overflowed in torch.manual_seed (a traceback) and cpu:7 trained and was recorded."""
    fails_cleanly(["train", *TOY_FLAGS, *flags, "--out", str(tmp_path / "r")], capsys, message)
    assert not (tmp_path / "r").exists()


def test_idx_files_of_random_bytes_name_the_file(tmp_path, capsys):
    """On main: an AssertionError traceback from torchvision's IDX reader."""
    raw = tmp_path / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    generator = torch.Generator().manual_seed(0)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes(bytes(torch.randint(0, 256, (5000,), generator=generator).tolist()))
    fails_cleanly(["train", "--data", "mnist", "--data-root", str(tmp_path / "mnist"), "--steps", "1", "--out",
                   str(tmp_path / "r")], capsys, "does not decode", str(raw / "train-images-idx3-ubyte"))


def test_fid_refuses_a_resolution_train_refuses(capsys):
    """On main ``fid --floor --resolution 7`` computed an FID at 7x7."""
    fails_cleanly(["fid", "--floor", "--data", "digits", "--resolution", "7"], capsys,
                  "--resolution: must be a power of two from 8 to 64, got 7")
    fails_cleanly(["fid", "--floor", "--data", "digits", "--seed", str(2**70)], capsys, "--seed")


def test_diagnose_on_a_folder_that_is_no_run_writes_nothing(tmp_path, capsys):
    """On main it created DIR/diagnostics, then refused with a message about 'resume'."""
    folder = tmp_path / "not_a_run"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    fails_cleanly(["diagnose", "all", str(folder)], capsys, "is not a fastreg run")
    assert sorted(os.listdir(folder)) == ["notes.txt"]


def test_resume_of_a_folder_that_is_no_run_leaves_no_lock(tmp_path, capsys):
    """On main: refused, but run.lock was left in the folder."""
    folder = tmp_path / "not_a_run"
    folder.mkdir()
    fails_cleanly(["train", "--resume", str(folder)], capsys, "is not a fastreg run")
    assert os.listdir(folder) == []


def test_resume_of_a_file_says_it_is_a_file(toy_run, capsys):
    """On main: 'run folder ... does not exist' for a file that does."""
    checkpoint = list_checkpoints(str(toy_run))[-1]
    fails_cleanly(["train", "--resume", checkpoint], capsys, "is a file; --resume takes the run folder")


def test_a_damaged_checkpoint_does_not_count_toward_keep_checkpoints(tmp_path):
    """On main, keep=2 after a damaged step 20 deleted the good step 10 and kept the damaged one."""
    from fastreg.train.manifest import check_bytes

    run = str(tmp_path)
    for step in (10, 20):
        save_checkpoint({"step": step, "x": torch.full((100,), float(step))}, run, step, keep=2)
    damaged = list_checkpoints(run)[-1]
    data = bytearray(open(damaged, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(damaged, "wb").write(bytes(data))
    save_checkpoint({"step": 30, "x": torch.full((100,), 30.0)}, run, 30, keep=2)
    names = [os.path.basename(p) for p in list_checkpoints(run)]
    assert names == ["checkpoint_00000010.pt", "checkpoint_00000020.pt", "checkpoint_00000030.pt"]
    intact = [p for p in list_checkpoints(run) if not _damaged(check_bytes, p)]
    assert [os.path.basename(p) for p in intact] == ["checkpoint_00000010.pt", "checkpoint_00000030.pt"]
    save_checkpoint({"step": 40, "x": torch.full((100,), 40.0)}, run, 40, keep=2)  # now older than both: gone
    assert [os.path.basename(p) for p in list_checkpoints(run)] == ["checkpoint_00000030.pt",
                                                                     "checkpoint_00000040.pt"]
    assert sorted(os.listdir(tmp_path / "checkpoints")) == [f"checkpoint_000000{s}.{e}" for s in (30, 40)
                                                            for e in ("manifest.json", "pt")]


def _damaged(check, path) -> bool:
    from fastreg.train.checkpoint import DamagedCheckpointError

    try:
        check(path)
    except DamagedCheckpointError:
        return True
    return False


def test_plots_skip_records_without_a_numeric_step(toy_run, tmp_path):
    """On main: a KeyError (no step) or a TypeError (a string step) inside the plot."""
    from fastreg.diagnostics.plots import _points, plot_seed_curves

    run = shutil.copytree(toy_run, tmp_path / "run")
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"d_loss": 1.0}) + "\n")
        f.write(json.dumps({"step": "eleven", "d_loss": 1.0}) + "\n")
        f.write(json.dumps({"step": True, "d_loss": 1.0}) + "\n")
    assert [step for step, _ in _points(str(run), "d_loss")] == [5, 10]
    path = plot_seed_curves({"run": [str(run)]}, ["d_loss"], str(tmp_path / "curves.png"))
    assert os.path.getsize(path) > 1000


@pytest.mark.parametrize("target", [float("nan"), float("inf"), -1.0])
@pytest.mark.parametrize("backend", ["reference", "native"])
def test_grad_penalty_refuses_a_target_that_is_no_norm(target, backend):
    """On main a NaN target gave a NaN penalty and a negative one a penalty of nothing meaningful."""
    from fastreg.ops import grad_penalty
    from fastreg.ops.backend import extension_loaded, use_backend

    grad = torch.randn(4, 3)
    with use_backend(backend), pytest.raises(ValueError, match=r"grad_penalty: target must be a finite float >= 0"):
        grad_penalty(grad, None, norm="gp", target=target)
    if backend == "native" and extension_loaded():  # the C++ check, for direct torch.ops calls
        with pytest.raises((ValueError, RuntimeError), match=r"target must be a finite float >= 0"):
            torch.ops.fastreg.grad_penalty(grad, None, "one", 0, "gp", target)


def test_a_d_returning_two_columns_is_not_taken_for_one_logit_per_sample():
    """On main a [B/2, 2] output (B entries) was reshaped to [B] and penalised as if it were B logits."""
    from fastreg.regularizers import r1_penalty

    D = _Pairs()
    x = torch.randn(8, 3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match=r"D must return one logit per sample \(\[B\] or \[B, 1\] with B = 8\), "
                                         r"got \(4, 2\)"):
        r1_penalty(D, x)
    column = nn.Linear(3, 1).double()
    assert r1_penalty(column, x).penalty.item() == pytest.approx(column.weight.square().sum().item())


class _Pairs(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 1).double()

    def forward(self, x):
        return self.linear(x).reshape(-1, 2)


def test_the_finite_difference_penalty_refuses_a_d_with_active_dropout():
    """On main it trained on: a 'gradient norm' near 4e4 instead of about 1, with no word of warning."""
    from fastreg.regularizers import r1_penalty

    D = nn.Sequential(nn.Linear(3, 16), nn.Dropout(0.5), nn.Linear(16, 1)).double()
    x = torch.randn(8, 3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match=r"penalty_grad='finite-difference' needs a deterministic D, but D\.1 is "
                                         r"Dropout\(p=0\.5\) in training mode"):
        r1_penalty(D, x, penalty_grad="finite-difference")
    D.eval()  # dropout off: accepted, and equal to the exact penalty
    fd = r1_penalty(D, x, penalty_grad="finite-difference").penalty
    exact = r1_penalty(D, x).penalty
    assert fd.item() == pytest.approx(exact.item(), rel=1e-9)


class _FunctionalDropoutD(nn.Module):
    """Dropout called in forward, no module to see: only two forwards on the same input tell."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 16), nn.Linear(16, 1)

    def forward(self, x):
        return self.b(nn.functional.dropout(torch.relu(self.a(x)), 0.5, training=self.training))


def test_the_finite_difference_penalty_refuses_a_d_with_functional_dropout():
    """Issue 28's note left functional dropout undetected: F.dropout in forward passed the module check."""
    from fastreg.regularizers import r1_penalty, roth_penalty

    D = _FunctionalDropoutD().double()
    x = torch.randn(8, 3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match=r"two forwards of D on the same 2 rows differ by .*functional dropout"):
        r1_penalty(D, x, penalty_grad="finite-difference")
    D.eval()  # deterministic now: accepted, and equal to the exact penalty
    fd = r1_penalty(D, x, penalty_grad="finite-difference").penalty
    assert fd.item() == pytest.approx(r1_penalty(D, x).penalty.item(), rel=1e-9)
    # a batch-norm D passes the probe, and its running statistics are those of the penalty's own forwards only
    bn = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.Linear(8, 1)).double()
    twin = copy.deepcopy(bn)
    real, fake = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 3, dtype=torch.float64)
    roth_penalty(bn, real, fake, penalty_grad="finite-difference")
    roth_penalty(twin, real, fake)
    assert torch.allclose(bn[1].running_mean, twin[1].running_mean, rtol=0, atol=1e-12)
    assert int(bn[1].num_batches_tracked) == int(twin[1].num_batches_tracked)
