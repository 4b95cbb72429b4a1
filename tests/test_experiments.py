"""The experiment suite: every experiment at the tiny scale (a few steps) into one folder, its reports
and index, the claim rules on hand-made numbers, the re-run commands, and the CLI's errors."""

import json
import math
import os
import re

import pytest

from fastreg import cli
from fastreg.experiments import EXPERIMENTS, FULL, QUICK, TINY, run_all
from fastreg.experiments.arjovsky import vanishing_claims
from fastreg.experiments.claims import HELD, INCONCLUSIVE, NOT_HELD, TABLE_HEADER, VERDICTS, Claim, at_least, lower
from fastreg.experiments.roth import (ARCHITECTURES, METHODS, architecture, cross_claims, noise_claims,
                                      stability_claims,
                                      toy_claims)
from fastreg.experiments.runs import command, image_config, toy_config
from fastreg.regularizer_table import REGULARIZER_FIELDS
from fastreg.experiments.tempered import tempered_claims
from fastreg.experiments.vral import vral_claims

CLAIMS_PER_EXPERIMENT = {"roth-stability": 3, "roth-cross-test": 2, "roth-toy": 3, "explicit-noise": 2,
                         "arjovsky-vanishing": 4, "vral": 3, "tempered": 2}
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")


@pytest.fixture(scope="module")
def suite(tmp_path_factory, one_thread):
    out = tmp_path_factory.mktemp("experiments")
    reports, index = run_all(str(out), TINY, "digits")
    return out, reports, index


def claims_rows(text: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index(TABLE_HEADER) + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("| "):
            break
        rows.append(line)
    return rows


def test_every_experiment_declares_its_claims():
    assert set(CLAIMS_PER_EXPERIMENT) == set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_report_structure(suite, name):
    out, reports, _ = suite
    folder = out / name
    text = (folder / "report.md").read_text()
    report = next(r for r in reports if r.name == name)
    # the claims table: header, one row per declared claim, each with a verdict and the seeds used
    rows = claims_rows(text)
    assert len(rows) == CLAIMS_PER_EXPERIMENT[name] == len(report.claims)
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 5
        assert cells[4].strip("*") in VERDICTS
        assert re.fullmatch(r"\d+(, \d+)*", cells[3]), cells[3]
    for i in range(1, len(rows) + 1):
        assert f"{i}. Rule for row {i}:" in text
    # settings and the command that re-runs the experiment
    assert "## Settings" in text and "seeds used:" in text
    assert f"re-run: fastreg experiment {name} --scale tiny --data" in text
    # figures: PNG files next to the report, referenced from it
    images = IMAGE.findall(text)
    assert images, "no figure"
    for image in images:
        path = folder / image
        assert path.suffix == ".png" and path.read_bytes()[:4] == b"\x89PNG", image
    # one row per training run, each with the fastreg train command that re-runs it
    run_rows = [line for line in text.splitlines() if line.endswith("` |") and "`fastreg train " in line]
    assert len(run_rows) == len(report.runs) > 0
    # the raw metrics
    raw = json.loads((folder / "metrics.json").read_text())
    assert raw["experiment"] == name
    assert [c["held"] for c in raw["claims"]] == [c.held for c in report.claims]
    assert len(raw["runs"]) == len(report.runs)
    assert all(r["command"].startswith("fastreg train ") for r in raw["runs"])
    assert raw["settings"]["scale"] == "tiny" and raw["results"]


def test_index_links_every_experiment(suite):
    out, reports, index = suite
    text = open(index).read()
    for name in EXPERIMENTS:
        assert f"]({name}/report.md)" in text
    assert text.count(TABLE_HEADER) == len(EXPERIMENTS)
    total = sum(CLAIMS_PER_EXPERIMENT.values())
    counts = [int(n) for n in re.search(r"Claims: (\d+) held, (\d+) not held, (\d+) inconclusive", text).groups()]
    assert sum(counts) == total
    for image in IMAGE.findall(text):
        assert (out / image).is_file(), image


def test_run_commands_rebuild_each_config(suite):
    _, reports, _ = suite
    for report in reports:
        for run in report.runs:
            args = cli.build_parser().parse_args(command(run.config).split()[1:])
            assert cli.config_from_args(args) == run.config, run.name


def test_quick_and_full_configs_are_valid(tmp_path):
    """Every configuration the quick and full scales would train is accepted (nothing is trained)."""
    for scale in (QUICK, FULL):
        for arch in scale.architectures:
            for method in METHODS:
                config = image_config(scale, "digits", str(tmp_path), 0, **architecture(arch, method, scale.width))
                assert config.steps == scale.image_steps and config.eval_every <= config.steps
                # the architecture decides D's normalization; only WGAN-GP's critic swaps batch norm for layer norm
                want = ARCHITECTURES[arch][1](scale.width)["d_norm"]
                if config.variant == "wgan-gp" and want == "batch":
                    want = "layer"
                assert config.resolved("d_norm") == want
        toy_config(scale, str(tmp_path), 0)
        image_config(scale, "digits", str(tmp_path), 0, steps=scale.tempered_steps, variant="wgan-gp", lens=True,
                     lens_width=scale.lens_width, lens_k=scale.tempered_steps)
    assert QUICK.seeds == FULL.seeds == (0, 1, 2)  # the multi-seed experiments use 3 seeds at both scales


# --- the claim rules on hand-made numbers -----------------------------------------------------------

def test_rule_primitives():
    assert at_least([True, True, False], 2) == HELD
    assert at_least([True, False, False], 2) == NOT_HELD
    assert at_least([True, None, False], 2) == INCONCLUSIVE
    assert lower(1.0, 2.0) and not lower(2.0, 1.0)
    assert lower(5.0, math.inf) is True and lower(math.inf, 5.0) is False
    assert lower(math.inf, math.nan) is None
    with pytest.raises(ValueError, match="held"):
        Claim("c", "p", "m", [0], "maybe", "r")


def test_stability_architectures():
    assert architecture("dcgan", "ns", 16) == {"model": "dcgan", "width": 16, "d_norm": "batch"}
    assert architecture("dcgan", "roth-annealed", 16)["d_norm"] == "batch"   # the same D as unregularized
    assert architecture("dcgan-nobn", "roth-annealed", 16)["d_norm"] == "none"
    assert architecture("dcgan", "noise", 16)["d_norm"] == "batch"
    assert architecture("dcgan-narrow", "wgan-gp", 16) == {"model": "dcgan", "width": 8, "d_norm": "layer",
                                                          "variant": "wgan-gp"}


LIKE_FOR_LIKE = set(REGULARIZER_FIELDS) | {"noise", "noise_schedule", "out"}  # what a compared run may change


def differing_fields(a, b) -> set:
    a, b = a.with_resolved_architecture(), b.with_resolved_architecture()
    return {f for f in vars(a) if getattr(a, f) != getattr(b, f)}


def test_compared_runs_differ_only_in_the_regularizer(suite):
    """Regularized vs unregularized (and vs instance noise) runs train the same D and G with the same data,
    budget and seed: only the regularizer's (or the noise's) fields differ."""
    _, reports, _ = suite
    by_name = {r.name: r for r in reports}
    stability = by_name["roth-stability"].runs
    for arch in {run.name.split(" / ")[0] for run in stability}:
        group = {run.name.split(" / ")[1]: run.config for run in stability if run.name.startswith(f"{arch} / ")}
        for method in ("roth-annealed", "roth-0.1", "noise"):
            assert differing_fields(group["ns"], group[method]) <= LIKE_FOR_LIKE, (arch, method)
        assert group["roth-annealed"].d_forward in ("joint", "separate")  # resolved from D, recorded in the report
    for name in ("roth-cross-test", "explicit-noise", "roth-toy"):
        runs = by_name[name].runs
        first = runs[0].config
        for run in runs[1:]:
            if run.config.seed == first.seed:
                assert differing_fields(first, run.config) <= LIKE_FOR_LIKE, (name, run.name)


def test_stability_rule():
    good = {a: {"ns": 40.0, "roth-annealed": 20.0, "roth-0.1": 25.0} for a in ("dcgan", "dcgan-nobn", "resnet")}
    good["resnet"]["ns"] = math.inf   # the unregularized run diverged
    assert [c.held for c in stability_claims(good, 0)] == [HELD, HELD, HELD]
    bad = {a: {"ns": 20.0, "roth-annealed": 30.0, "roth-0.1": 19.0} for a in ("dcgan", "dcgan-nobn", "resnet")}
    assert [c.held for c in stability_claims(bad, 0)] == [NOT_HELD, HELD, NOT_HELD]


def test_cross_test_rule():
    assert [c.held for c in cross_claims(0.0, 1.0, 0)] == [HELD, HELD]
    assert [c.held for c in cross_claims(0.3, 0.6, 0)] == [HELD, NOT_HELD]
    assert [c.held for c in cross_claims(0.7, 0.2, 0)] == [NOT_HELD, NOT_HELD]


def test_toy_rule():
    reg = {s: {"modes_covered": 7, "high_quality": 0.9, "wasserstein_1": 0.1} for s in (0, 1, 2)}
    unreg = {s: {"modes_covered": 3, "high_quality": 0.4, "wasserstein_1": 0.5} for s in (0, 1, 2)}
    assert [c.held for c in toy_claims(reg, unreg)] == [HELD, HELD, HELD]
    assert [c.held for c in toy_claims(unreg, reg)] == [NOT_HELD, NOT_HELD, NOT_HELD]
    nothing = {s: {"modes_covered": 0, "high_quality": 0.0, "wasserstein_1": 0.4} for s in (0, 1, 2)}
    assert toy_claims(nothing, nothing)[0].held == NOT_HELD   # 0 of 7 modes each: no evidence for the claim


def test_noise_rule():
    assert [c.held for c in noise_claims(10.0, 30.0, {0.1: 20.0, 1.0: 50.0}, 0)] == [HELD, HELD]
    assert [c.held for c in noise_claims(25.0, 30.0, {0.1: 20.0, 1.0: 50.0}, 0)] == [NOT_HELD, HELD]


def test_vanishing_rule():
    plain = {f"{e} epochs": {"minimax": 1e-3, "nonsat": 0.8, "spread_start": 0.1, "spread_end": 0.5}
             for e in (1, 10, 25)}
    noisy = {k: {**v, "minimax": 0.5} for k, v in plain.items()}
    assert [c.held for c in vanishing_claims(plain, noisy, 0)] == [HELD] * 4
    flat = {k: {"minimax": 0.9, "nonsat": 0.5, "spread_start": 0.5, "spread_end": 0.1} for k in plain}
    assert [c.held for c in vanishing_claims(flat, flat, 0)] == [NOT_HELD] * 4


def test_vral_rule():
    fid = {"gan": math.inf, "ns": 80.0, "vral": 30.0}
    overlap = {"gan": 0.0, "ns": 0.1, "vral": 0.6}
    assert [c.held for c in vral_claims(fid, overlap, overlap, 0)] == [HELD, HELD, HELD]
    assert [c.held for c in vral_claims({**fid, "ns": 20.0}, {**overlap, "gan": 0.9}, overlap, 0)] == \
        [NOT_HELD, NOT_HELD, HELD]


def test_tempered_rule():
    fid = {v: {"plain": [40.0, 60.0, 50.0], "lens": [20.0, 22.0, 24.0]} for v in ("gan", "lsgan", "wgan-gp")}
    assert [c.held for c in tempered_claims(fid, [0, 1, 2])] == [HELD, HELD]
    worse = {v: {"plain": r["lens"], "lens": r["plain"]} for v, r in fid.items()}
    assert [c.held for c in tempered_claims(worse, [0, 1, 2])] == [NOT_HELD, NOT_HELD]
    one_seed = {v: {"plain": [40.0], "lens": [20.0]} for v in fid}
    assert [c.held for c in tempered_claims(one_seed, [0])] == [HELD, INCONCLUSIVE]


# --- the CLI -------------------------------------------------------------------------------------------

def test_unknown_experiment_exits_non_zero_naming_it(capsys, tmp_path):
    assert cli.main(["experiment", "roth-stabilty", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "roth-stabilty" in err and "roth-stability" in err
    assert not os.listdir(tmp_path)


def test_unknown_dataset_exits_non_zero_naming_it(capsys, tmp_path):
    assert cli.main(["experiment", "vral", "--scale", "tiny", "--data", "nodata", "--out", str(tmp_path)]) == 2
    assert "nodata" in capsys.readouterr().err


def test_cli_runs_one_experiment(capsys, tmp_path, one_thread):
    assert cli.main(["experiment", "roth-cross-test", "--scale", "tiny", "--seeds", "3", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "roth-cross-test:" in printed and "report written to" in printed
    raw = json.loads((tmp_path / "roth-cross-test" / "metrics.json").read_text())
    assert raw["settings"]["seeds used"] == [3] and all(r["seed"] == 3 for r in raw["runs"])


def test_lens_width_sets_the_lens_channels(tmp_path, one_thread):
    """The tempered experiment's narrower lens (config field lens_width) reaches the trainer's lens."""
    from fastreg.train.config import ConfigError
    from fastreg.train.trainer import Trainer

    config = image_config(TINY, "digits", str(tmp_path), 0, lens=True, lens_width=4)
    lens = Trainer(config).lens
    assert lens.inp.out_channels == 4 and lens.blocks[0].conv1.in_channels == 4
    with pytest.raises(ConfigError, match="lens_width"):
        image_config(TINY, "digits", str(tmp_path), 0, lens=True, lens_width=0)


def test_readme_section_names_every_experiment_and_its_commands_parse():
    """README.md's experiments section: a row per experiment, and every `fastreg experiment` command it
    shows is accepted by the CLI's parser with a known name."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    heading = "## Reproduce the papers' claims"
    assert heading in readme
    text = readme.split(heading, 1)[1].split("\n## ", 1)[0]
    for name in EXPERIMENTS:
        assert f"| `{name}` |" in text, name
    commands = re.findall(r"^(fastreg experiment [^#\n]*)", text, re.M)
    assert len(commands) >= 3
    for line in commands:
        args = cli.build_parser().parse_args(line.split()[1:])
        assert args.name == "all" or args.name in EXPERIMENTS, line
