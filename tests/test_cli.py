"""`fastreg train` from the command line: outputs, YAML round trip, errors, help."""

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys

import pytest

from fastreg.cli import build_parser, config_from_args, main
from fastreg.train.config import ConfigError, TrainConfig, load_yaml, save_yaml

TOY = ["--data", "ring8", "--model", "mlp", "--z-dim", "4", "--batch-size", "16"]


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "fastreg", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})


def test_train_writes_every_output(tmp_path):
    out = tmp_path / "ns-roth"
    result = run_cli("train", "--variant", "ns", "--reg", "roth", "--gamma", "2.0", "--gamma-anneal", "0.01",
                     *TOY, "--steps", "20", "--log-every", "5", "--sample-every", "10", "--checkpoint-every", "10",
                     "--out", str(out))
    assert result.returncode == 0, result.stderr
    config = load_yaml(out / "config.yaml")
    assert (config.variant, config.reg, config.gamma, config.gamma_anneal, config.steps) == (
        "ns", "roth", 2.0, 0.01, 20)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [5, 10, 15, 20]
    assert records[0]["gamma"] == pytest.approx(2.0 * 0.01 ** (5 / 20))  # annealed over G iterations
    assert sorted(os.listdir(out / "samples")) == ["step_000010.png", "step_000020.png"]
    assert sorted(os.listdir(out / "checkpoints")) == [f"checkpoint_000000{s}.{e}" for s in (10, 20)
                                                       for e in ("manifest.json", "pt")]


def test_config_yaml_round_trip_and_flag_precedence(tmp_path):
    config = TrainConfig(variant="fgan:kl", reg="roth", gamma=0.5, betas=(0.1, 0.2), noise=0.3, lens=False,
                         d_norm="none", out=str(tmp_path / "x"))
    path = tmp_path / "c.yaml"
    save_yaml(config, path)
    assert load_yaml(path) == config
    args = build_parser().parse_args(["train", "--config", str(path), "--gamma", "0.7", "--d-norm", "none"])
    merged = config_from_args(args)
    assert merged == dataclasses.replace(config, gamma=0.7)


@pytest.mark.parametrize("flags,field", [
    (["--variant", "nope"], "variant"), (["--gamma", "-1"], "gamma"), (["--data", "ring8"], "model"),
    (["--reg", "roth", "--variant", "wgan"], "reg"), (["--resolution", "24"], "resolution"),
    (["--reg", "roth", "--compile", "forward"], "compile"),
    (["--reg", "roth", "--d-forward", "joint"], "d_forward"),  # the default DCGAN D under Roth has batch norm
    (["--reg", "r1", "--d-forward", "separate"], "d_forward"), (["--d-norm", "group"], "d_norm"),
    (["--model", "resnet", "--d-norm", "batch"], "d_norm"), (["--reg", "roth", "--variant", "lsgan"], "reg"),
    (["--penalty-grad", "numeric"], "penalty_grad"), (["--model", "transformer", "--reg", "r1"], "penalty_grad"),
])
def test_bad_options_exit_non_zero_naming_the_field(flags, field, capsys, tmp_path):
    assert main(["train", *flags, "--out", str(tmp_path / "bad")]) == 2
    assert f"invalid config: {field}:" in capsys.readouterr().err


def test_bad_yaml_field_named(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("variant: ns\nlearning_rate: 0.1\n")
    assert main(["train", "--config", str(path)]) == 2
    assert "learning_rate" in capsys.readouterr().err


def test_help_lists_every_option_with_its_default():
    top = run_cli("--help")
    assert top.returncode == 0 and "train" in top.stdout
    text = run_cli("train", "--help").stdout
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        assert flag in text, flag
        help_text = f.metadata["help"]
        if "default" not in help_text.lower():
            assert f"(default: {f.default})" in " ".join(text.split()), f.name


def test_the_regularizer_table_drives_the_cli_help_and_validation():
    """Every regularizer name and default weight in `fastreg train --help` comes from REGULARIZERS."""
    from fastreg.regularizers import D_NORMS, FORWARD_MODES, REGULARIZERS

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    actions = {a.dest: a for a in train._actions}
    assert actions["reg"].help.startswith("regularizer: " + ", ".join(REGULARIZERS))
    for spec in REGULARIZERS.values():
        if spec.name != "none":
            assert f"{spec.name}: {spec.symbol}={spec.weight:g}" in actions["gamma"].help
            assert f"{spec.name}: {spec.d_norm}" in actions["d_norm"].help
        for variant in ("ns", "wgan", "wgan-gp", "lsgan", "fgan:kl"):
            config = TrainConfig(variant=variant, reg=spec.name)
            if spec.applies_to(variant):
                expected = REGULARIZERS[config.effective_reg()].weight
                assert config.validate().resolved("gamma") == expected
            else:
                with pytest.raises(ConfigError, match="^reg:"):
                    config.validate()
    assert TrainConfig(reg="roth", gamma_anneal=0.01).resolved("gamma") == REGULARIZERS["roth"].annealed_start
    for norm in D_NORMS:
        assert norm in actions["d_norm"].help
    for mode in FORWARD_MODES:
        assert TrainConfig(reg="roth", d_norm="none", d_forward=mode).validate().d_forward == mode


def test_run_folders_from_before_d_norm_still_load():
    from fastreg.train.config import from_dict, to_dict

    legacy = {**to_dict(TrainConfig()), "d_batchnorm": False}
    del legacy["d_norm"]
    assert from_dict(legacy).d_norm == "none"
    assert from_dict({**legacy, "d_batchnorm": True}).d_norm == "batch"


def _all_parsers(parser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _all_parsers(sub)


def test_no_help_entry_shows_two_defaults():
    """Issue 16: e.g. '--d-batchnorm  BatchNorm in D (default: on without ...) (default: None)'."""
    seen = 0
    for parser in _all_parsers(build_parser()):
        formatter = parser._get_formatter()
        for action in parser._actions:
            if action.help in (None, argparse.SUPPRESS):
                continue
            shown = formatter._expand_help(action) if action.help else ""
            defaults = re.findall(r"(?<![/\w])default(?![/\w])", shown.lower())  # not runs/default
            assert len(defaults) <= 1, f"{parser.prog} {action.option_strings}: {shown}"
            seen += 1
    assert seen > 100


def test_train_without_a_terminal_prints_progress_lines_and_a_summary(tmp_path):
    """Issue 16: with stdout not a terminal `fastreg train` printed nothing, and a resume to a step the run had
    reached exited 0 silently. Now: a line per log interval, one summary line, and a resume with nothing to train
    is refused saying why."""
    out = tmp_path / "run"
    result = run_cli("train", *TOY, "--steps", "20", "--log-every", "5", "--out", str(out))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{out.name}: G and D: MLPs; variant ns, no gradient penalty")  # the resolved D
    lines = lines[1:]
    assert [line.split(":")[0] for line in lines[:4]] == [f"{out} step {k}/20" for k in (5, 10, 15, 20)]
    assert all(" d_loss " in line and " g_loss " in line for line in lines[:4])
    assert len(lines) == 5 and lines[4].startswith(f"fastreg: trained {out} from step 0 to 20 in ")
    assert f"checkpoint {out}/checkpoints/checkpoint_00000020.pt" in lines[4]
    again = run_cli("train", "--resume", str(out), "--steps", "20")  # refused, naming steps (resume policy)
    assert again.returncode == 2 and "steps: the run in" in again.stderr and "give --steps above 20" in again.stderr
    more = run_cli("train", "--resume", str(out), "--steps", "25")
    assert more.returncode == 0 and f"fastreg: trained {out} from step 20 to 25 in " in more.stdout


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without a usable GPU")
def test_device_cuda_without_a_gpu_exits_2_naming_device(tmp_path):
    """Issue 16: `--device cuda` on a machine without a GPU was a raw 'Found no NVIDIA driver' traceback."""
    for device in ("cuda", "cuda:0"):
        result = run_cli("train", *TOY, "--steps", "1", "--device", device, "--out", str(tmp_path / device))
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(f"fastreg train: invalid config: device: '{device}' asks for a CUDA GPU, "
                                        "but none is usable here") and "Traceback" not in result.stderr
    assert not (tmp_path / "cuda").exists()


def test_a_non_utf8_yaml_config_exits_2_naming_the_file(tmp_path):
    """Issue 16: a Latin-1 YAML file was a raw UnicodeDecodeError traceback."""
    path = tmp_path / "latin1.yaml"
    path.write_bytes("variant: ns\nout: caf\u00e9\n".encode("latin-1"))
    result = run_cli("train", "--config", str(path), "--steps", "1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (f"fastreg train: invalid config: config: {path} is not UTF-8 text (byte 0xe9 at "
                                     "offset 20); save it as UTF-8")
