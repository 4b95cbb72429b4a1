"""`fastreg train` from the command line: outputs, YAML round trip, errors, help."""

import dataclasses
import json
import os
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
    assert (config.variant, config.reg, config.gamma, config.gamma_anneal, config.steps) == ("ns", "roth", 2.0, 0.01, 20)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [5, 10, 15, 20]
    assert records[0]["gamma"] == pytest.approx(2.0 * 0.01 ** (5 / 20))  # annealed over G iterations
    assert sorted(os.listdir(out / "samples")) == ["step_000010.png", "step_000020.png"]
    assert sorted(os.listdir(out / "checkpoints")) == ["checkpoint_00000010.pt", "checkpoint_00000020.pt"]


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
        assert f"(default: {f.default})" in " ".join(text.split()), f.name


def test_the_regularizer_table_drives_the_cli_help_and_validation():
    """Every regularizer name and default weight in `fastreg train --help` comes from REGULARIZERS."""
    from fastreg.regularizer_table import D_NORMS, FORWARD_MODES, REGULARIZERS

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
