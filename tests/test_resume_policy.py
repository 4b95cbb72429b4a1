"""Resume overrides mean what they say: a changeable field is applied and recorded, a fixed one is refused
with exit 2 naming it before anything is written (fastreg.train.resume_policy, README 'Resume')."""

import dataclasses
import os
import re
import shutil

import pytest
import yaml

from fastreg.cli import main
from fastreg.train.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from fastreg.train.config import TrainConfig
from fastreg.train.metrics_log import read_metrics
from fastreg.train.trainer import train

from conftest import train_shared_run

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY = dict(data="ring8", model="mlp", z_dim=4, batch_size=8, log_every=5, sample_every=1000, ema=0.9, steps=10,
           checkpoint_every=5)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return train_shared_run(tmp_path_factory, "template", **TOY)


@pytest.fixture
def run(template, tmp_path):
    return shutil.copytree(template, tmp_path / "run")


def recorded(run) -> dict:
    return yaml.safe_load((run / "config.yaml").read_text())


def final_state(run) -> dict:
    return load_checkpoint(latest_checkpoint(str(run)))


def test_betas_are_applied_to_both_optimizers(run):
    """On main the new betas were recorded while both optimizers kept (0.5, 0.999)."""
    assert main(["train", "--resume", str(run), "--steps", "12", "--betas", "0.0", "0.9"]) == 0
    state = final_state(run)
    for name in ("opt_g", "opt_d"):
        assert [tuple(g["betas"]) for g in state[name]["param_groups"]] == [(0.0, 0.9)], name
    assert tuple(state["config"]["betas"]) == (0.0, 0.9) and recorded(run)["betas"] == [0.0, 0.9]


def test_learning_rates_are_applied(run):
    assert main(["train", "--resume", str(run), "--steps", "12", "--lr-d", "1e-3", "--lr-g", "3e-4"]) == 0
    state = final_state(run)
    assert [g["lr"] for g in state["opt_d"]["param_groups"]] == [1e-3]
    assert [g["lr"] for g in state["opt_g"]["param_groups"]] == [3e-4]
    assert recorded(run)["lr_d"] == 1e-3 and recorded(run)["lr_g"] == 3e-4


def test_steps_logging_and_checkpointing_are_applied(run):
    assert main(["train", "--resume", str(run), "--steps", "16", "--log-every", "2", "--checkpoint-every", "3",
                 "--keep-checkpoints", "2"]) == 0
    assert final_state(run)["step"] == 16
    assert [r["step"] for r in read_metrics(str(run))] == [5, 10, 12, 14, 16]
    assert [os.path.basename(p) for p in list_checkpoints(str(run))] == ["checkpoint_00000015.pt",
                                                                        "checkpoint_00000016.pt"]
    assert {k: recorded(run)[k] for k in ("steps", "log_every", "checkpoint_every", "keep_checkpoints")} == \
        {"steps": 16, "log_every": 2, "checkpoint_every": 3, "keep_checkpoints": 2}


def test_the_same_value_as_the_run_is_no_change(run):
    """--optimizer adam on an ns run (whose optimizer is unset: adam by the variant) changes nothing."""
    assert main(["train", "--resume", str(run), "--steps", "11", "--optimizer", "adam", "--seed", "0",
                 "--z-dim", "4"]) == 0
    assert final_state(run)["step"] == 11


FIXED_CHANGES = {
    "optimizer": ["--optimizer", "rmsprop"],  # main: KeyError 'square_avg' after rewriting config.yaml
    "width": ["--width", "32"],               # main: a truncated state-dict error
    "z_dim": ["--z-dim", "6"],
    "variant": ["--variant", "lsgan"],
    "reg": ["--reg", "r1"],
    "seed": ["--seed", "3"],
    "batch_size": ["--batch-size", "16"],
    "ema": ["--ema", "0.5"],
    "n_critic": ["--n-critic", "2"],
    "dtype": ["--dtype", "float64"],
    "noise": ["--noise", "0.1"],
    "data": ["--data", "grid25"],
}


@pytest.mark.parametrize("field", FIXED_CHANGES)
def test_a_fixed_field_is_refused_naming_it_and_nothing_is_written(field, run, capsys):
    before = {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file() and p.name != "run.lock"}
    assert main(["train", "--resume", str(run), "--steps", "12", *FIXED_CHANGES[field]]) == 2
    err = capsys.readouterr().err
    assert re.search(rf"invalid config: {field}: fixed by the run in {re.escape(str(run))} \(it has .*, the resume "
                     rf"asks for .*\): .*A resume can change: steps, lr_d, lr_g, betas", err), err
    after = {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file() and p.name != "run.lock"}
    assert after == before


def test_resume_with_another_out_is_refused_naming_out(run, tmp_path, capsys):
    """On main: TypeError (out given twice)."""
    assert main(["train", "--resume", str(run), "--out", str(tmp_path / "x"), "--steps", "12"]) == 2
    err = capsys.readouterr().err
    assert f"out: --resume continues the run in its own folder {run}" in err and "copy" in err
    assert not (tmp_path / "x").exists()
    assert main(["train", "--resume", str(run), "--out", str(run), "--steps", "11"]) == 0  # its own folder: fine


def test_resume_with_a_config_file_is_refused_naming_config(run, tmp_path, capsys):
    """On main --config was silently ignored."""
    other = tmp_path / "other.yaml"
    other.write_text("lr_d: 0.1\n")
    assert main(["train", "--resume", str(run), "--config", str(other), "--steps", "12"]) == 2
    assert f"config: --config {other} cannot be combined with --resume" in capsys.readouterr().err


@pytest.mark.parametrize("steps", ["5", "10"])
def test_steps_at_or_below_the_runs_step_are_refused_and_config_yaml_is_kept(steps, run, capsys):
    """On main --steps 30 on a run at step 60 did nothing, said nothing and rewrote config.yaml."""
    before = (run / "config.yaml").read_bytes()
    assert main(["train", "--resume", str(run), "--steps", steps]) == 2
    assert (f"steps: the run in {run} is at step 10 already and the resume asks for --steps {steps}, so there is "
            f"nothing to train; give --steps above 10") in capsys.readouterr().err
    assert (run / "config.yaml").read_bytes() == before


def test_betas_on_an_rmsprop_run_are_refused(tmp_path, capsys):
    run = tmp_path / "wgan"
    train(TrainConfig(**{**TOY, "steps": 2, "checkpoint_every": 2}, variant="wgan", n_critic=1, out=str(run)))
    assert main(["train", "--resume", str(run), "--steps", "3", "--betas", "0.1", "0.9"]) == 2
    assert "betas: the run's optimizer is rmsprop, which has no betas" in capsys.readouterr().err


def test_every_config_field_is_classified_once():
    from fastreg.train import resume_policy

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(resume_policy.CHANGEABLE) | set(resume_policy.FIXED) == names
    assert not set(resume_policy.CHANGEABLE) & set(resume_policy.FIXED)


def test_the_readme_states_the_policy_of_every_field():
    from fastreg.train import resume_policy

    readme = open(os.path.join(ROOT, "README.md")).read()
    section = readme[readme.index("### Resume"):]
    section = section[:section.index("\n#", 1)]
    for name in [*resume_policy.CHANGEABLE, *resume_policy.FIXED]:
        assert f"`{name}`" in section, name
