"""The executable regularizer table (fastreg.regularizers.table): each row's penalty call against the penalty
functions and a plain D forward, the rules a row owns (what a variant carries, config checks), and the names
kept from before the regularizers became one folder."""

import importlib
import inspect
import warnings

import pytest
import torch

from fastreg import losses, regularizers
from fastreg.models import MLPDiscriminator
from fastreg.regularizers import REGULARIZERS, Penalty, check_config, in_force
from fastreg.train import steps as steps_module


def d_and_batches(seed=0):
    torch.manual_seed(seed)
    D = MLPDiscriminator(in_dim=2).double()
    with torch.no_grad():  # input-gradient norms above 1 on some rows, so the one-sided penalty is not 0
        list(D.parameters())[-2].mul_(40)
    g = torch.Generator().manual_seed(seed + 1)
    return D, torch.randn(6, 2, generator=g, dtype=torch.float64), torch.randn(6, 2, generator=g, dtype=torch.float64)


def penalty_rows():
    return [name for name, row in REGULARIZERS.items() if row.has_penalty]


@pytest.mark.parametrize("name", penalty_rows())
def test_every_row_returns_the_penalty_and_both_logits(name):
    """Penalty(penalty, v_real, v_fake): the logits are D's on the two batches, the penalty a positive scalar with a
    gradient for D's parameters, equal to the paper function's."""
    D, x_real, x_fake = d_and_batches()
    row = REGULARIZERS[name]
    torch.manual_seed(5)
    got = row.penalty(D, x_real, x_fake, variant="ns", generator=torch.Generator().manual_seed(3))
    assert isinstance(got, Penalty) and got.penalty.dim() == 0 and float(got.penalty.detach()) > 0
    torch.testing.assert_close(got.v_real, D(x_real), rtol=1e-12, atol=0)
    torch.testing.assert_close(got.v_fake, D(x_fake), rtol=1e-12, atol=0)
    direct = {"roth": lambda: regularizers.roth_penalty(D, x_real, x_fake, "ns").penalty,
              "r1": lambda: regularizers.r1_penalty(D, x_real).penalty,
              "r2": lambda: regularizers.r2_penalty(D, x_fake).penalty,
              "r1r2": lambda: regularizers.r1_penalty(D, x_real).penalty + regularizers.r2_penalty(D, x_fake).penalty,
              "gp": lambda: regularizers.wgan_gp_penalty(D, x_real, x_fake,
                                                         generator=torch.Generator().manual_seed(3)).penalty,
              "gp1": lambda: regularizers.wgan_gp_penalty(D, x_real, x_fake, one_sided=True,
                                                          generator=torch.Generator().manual_seed(3)).penalty}
    if name in direct:
        torch.testing.assert_close(got.penalty, direct[name](), rtol=1e-12, atol=0)
    (grad,) = torch.autograd.grad(got.penalty, [next(D.parameters())])
    assert float(grad.abs().sum()) > 0


def test_the_none_row_has_no_penalty_and_says_so():
    D, x_real, x_fake = d_and_batches()
    with pytest.raises(ValueError, match="regularizer 'none' has no penalty"):
        REGULARIZERS["none"].penalty(D, x_real, x_fake)
    assert REGULARIZERS["none"].preset() == {"reg": "none"}


def test_a_d_step_with_the_row_is_the_loss_plus_the_weighted_penalty():
    """The trainer's step functions (also the diagnostics'): logits_and_penalty, then d_loss."""
    D, x_real, x_fake = d_and_batches()
    row = REGULARIZERS["r1"]
    terms = steps_module.logits_and_penalty(D, x_real, x_fake, row, True, variant="ns")
    loss = steps_module.d_loss("ns", terms, row.loss_weight(10.0))
    expected = losses.d_loss("ns", D(x_real), D(x_fake)) + 5.0 * regularizers.r1_penalty(D, x_real).penalty
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=0)
    plain = steps_module.logits_and_penalty(D, x_real, x_fake, row, False, variant="ns")
    assert plain.penalty is None
    torch.testing.assert_close(steps_module.d_loss("ns", plain, 5.0), losses.d_loss("ns", D(x_real), D(x_fake)))


def test_what_a_variant_carries_is_the_rows_word():
    assert in_force("wgan-gp").name == "gp" and in_force("wgan-gp", "gp1").name == "gp1"
    assert in_force("ns").name == "none" and in_force("ns", "roth").name == "roth"
    assert [r.name for r in REGULARIZERS.values() if "wgan-gp" in r.carried_by] == ["gp"]


@pytest.mark.parametrize("variant, reg, fields, message", [
    ("wgan", "r1", {}, "^reg: wgan bounds D by weight clipping"),
    ("wgan-gp", "r1", {}, "^reg: 'r1' applies to every variant but wgan, wgan-gp.*wgan-gp carries gp"),
    ("lsgan", "roth", {}, "^reg: 'roth' applies to gan, ns, bgan, fgan:<div>, not variant 'lsgan'"),
    ("ns", "r1", {"d_forward": "joint"}, "^d_forward: only a penalty that shares the loss's logits"),
    ("ns", "r1", {"gamma_anneal": 0.01}, "^gamma_anneal: annealing is Roth's schedule; set reg=roth"),
    ("ns", "r1", {"model": "transformer"}, "^penalty_grad: the transformer D's fused attention"),
    ("wgan-gp", "none", {"compile": "forward"}, r"^compile: 'forward' compiles D, but the gradient penalty \(gp\)"),
])
def test_the_config_rules_of_a_regularizer_name_the_field(variant, reg, fields, message):
    with pytest.raises(ValueError, match=message):
        check_config(variant, reg, **fields)


def test_rules_that_pass_return_the_row_in_force():
    assert check_config("wgan-gp", "none").name == "gp"
    assert check_config("ns", "r1", model="transformer", penalty_grad="finite-difference").name == "r1"
    assert check_config("ns", "none", model="transformer", compile="forward").name == "none"
    assert check_config("ns", "roth", d_forward="joint", gamma_anneal=0.01).name == "roth"


def test_the_networks_and_the_steps_do_not_branch_on_regularizer_names():
    """The steps ask the row; the models import no regularizer."""
    from fastreg.train import outputs

    for module in (steps_module, outputs):
        source = inspect.getsource(module)
        for name in REGULARIZERS:
            assert f'reg == "{name}"' not in source and f'reg != "{name}"' not in source, name
            assert name == "none" or f'"{name}"' not in source, name
    for module in ("fastreg.models.dcgan", "fastreg.models.mlp", "fastreg.models.resnet"):
        assert "regulariz" not in "".join(line for line in inspect.getsource(importlib.import_module(module))
                                          .splitlines() if line.startswith(("from", "import")))


def test_the_old_names_still_work_and_the_renamed_ones_warn():
    D, x_real, x_fake = d_and_batches()
    assert regularizers.RothPenalty is regularizers.PenaltyAndLogits is Penalty
    with pytest.warns(DeprecationWarning, match="use wgan_gp_penalty"):
        old = regularizers.gradient_penalty(D, x_real, x_fake, generator=torch.Generator().manual_seed(3))
    new = regularizers.wgan_gp_penalty(D, x_real, x_fake, generator=torch.Generator().manual_seed(3))
    assert isinstance(old, torch.Tensor) and float(old.detach()) == float(new.penalty.detach())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = importlib.reload(importlib.import_module("fastreg.regularizer_table"))
        fd = importlib.reload(importlib.import_module("fastreg.penalty_gradient"))
    messages = {str(w.message).partition(" is deprecated")[0] for w in caught if w.category is DeprecationWarning}
    assert messages == {"fastreg.regularizer_table", "fastreg.penalty_gradient"}
    assert table.REGULARIZERS is REGULARIZERS and table.REGULARIZER_FIELDS == regularizers.REGULARIZER_FIELDS
    assert fd.relative_step is regularizers.finite_difference.relative_step
    assert fd.PENALTY_GRADS == ("exact", "finite-difference")


def test_no_attribute_passes_between_the_steps_and_the_cuda_graphs():
    """Steps runs eagerly; the graphs get what they need as arguments (nothing of theirs is kept on Steps)."""
    from fastreg.train.config import TrainConfig
    from fastreg.train.trainer import Trainer

    trainer = Trainer(TrainConfig(variant="ns", reg="r1", data="ring8", model="mlp", z_dim=4, batch_size=8,
                                  device="cpu", out="/tmp/unused"))
    assert not hasattr(trainer.steps, "graphs") and not hasattr(trainer.steps, "captured_checks")
    assert trainer.graphs is None and trainer.D is trainer.steps.D and trainer.modules()["opt_d"] is trainer.opt_d
    assert "self.graphs" not in inspect.getsource(steps_module.Steps)


def test_r1r2_is_r1_plus_r2_with_their_gradient_and_trains(tmp_path):
    """The R1 + R2 row (R3GAN's pairing): value and parameter gradient are R1's plus R2's; a trainer run with it
    logs that penalty and gamma/2 = 5 as its loss factor."""
    from fastreg.train.config import TrainConfig
    from fastreg.train.trainer import Trainer

    D, x_real, x_fake = d_and_batches()
    got = REGULARIZERS["r1r2"].penalty(D, x_real, x_fake).penalty
    expected = regularizers.r1_penalty(D, x_real).penalty + regularizers.r2_penalty(D, x_fake).penalty
    params = list(D.parameters())
    def grads(t):
        return torch.autograd.grad(t, params, allow_unused=True, materialize_grads=True)

    for a, b in zip(grads(got), grads(expected)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    assert REGULARIZERS["r1r2"].loss_weight(10.0) == 5.0
    fd = REGULARIZERS["r1r2"].penalty(D, x_real, x_fake, penalty_grad="finite-difference").penalty
    torch.testing.assert_close(fd, expected, rtol=1e-12, atol=0)  # the same value, another gradient estimate
    config = TrainConfig(variant="ns", reg="r1r2", data="ring8", model="mlp", z_dim=4, batch_size=8, device="cpu",
                         dtype="float64", out=str(tmp_path / "run"))
    trainer = Trainer(config.validate())
    out = trainer.iteration()
    assert trainer.config.resolved("gamma") == 10.0 and trainer.config.resolved("d_norm") == "none"
    assert float(out["penalty"]) > 0
    with pytest.raises(ValueError, match="^reg: 'r1r2' applies to every variant but wgan, wgan-gp"):
        check_config("wgan-gp", "r1r2")
