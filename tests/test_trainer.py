"""The trainer: every accepted variant x add-on runs; a step equals a hand-written one; resume."""

import copy
import itertools
import math

import pytest
import torch

from fastreg import data, losses, regularizers
from fastreg.train.config import ConfigError, TrainConfig
from fastreg.train.metrics_log import read_metrics
from fastreg.train.steps import Steps
from fastreg.train.trainer import Trainer, resume, train

ADD_ONS = [
    {}, {"reg": "roth"}, {"reg": "roth", "gamma_anneal": 0.01}, {"reg": "gp"}, {"reg": "gp1"}, {"reg": "r1"},
    {"reg": "r2"}, {"reg": "r1", "reg_every": 2}, {"noise": 0.1}, {"noise": 0.1, "noise_schedule": "exponential"},
    {"lens": True}, {"amp": "bf16"},
]
DATA = {"toy": {"data": "ring8", "model": "mlp", "z_dim": 4},
        "digits16": {"data": "digits", "resolution": 16, "width": 8, "z_dim": 8}}


def tiny_config(tmp_path, **fields) -> TrainConfig:
    defaults = dict(steps=3, batch_size=8, out=str(tmp_path / "run"), log_every=1, sample_every=1000,
                    checkpoint_every=1000, ema=0.9)
    return TrainConfig(**{**defaults, **fields})


def accepted_combinations():
    for variant, add_on, data_name in itertools.product(losses.available(), ADD_ONS, DATA):
        fields = {"variant": variant, **add_on, **DATA[data_name]}
        try:
            TrainConfig(**fields).validate()
        except ConfigError:
            continue
        yield pytest.param(fields, id=f"{variant}-{'-'.join(f'{k}={v}' for k, v in add_on.items()) or 'plain'}-"
                                      f"{data_name}")


COMBINATIONS = list(accepted_combinations())


def test_combinations_cover_every_variant_and_add_on():
    variants = {p.values[0]["variant"] for p in COMBINATIONS}
    assert variants == set(losses.available())
    assert len(COMBINATIONS) > 150


@pytest.mark.parametrize("fields", COMBINATIONS)
def test_every_accepted_combination_trains(fields, tmp_path):
    trainer = Trainer(tiny_config(tmp_path, **fields, n_critic=1 if fields["variant"] == "wgan" else None))
    before = [copy.deepcopy(m.state_dict()) for m in (trainer.G, trainer.D)]
    for _ in range(3):
        out = trainer.iteration(record_norms=True)
        for key in ("d_loss", "g_loss", "d_grad_norm", "g_grad_norm"):
            assert math.isfinite(out[key].item()), f"{key} = {out[key]}"
    for module, old in zip((trainer.G, trainer.D), before):
        changed = any(not torch.equal(p, old[name]) for name, p in module.state_dict().items()
                      if p.is_floating_point())
        assert changed, f"{type(module).__name__} parameters did not change"


def test_rejected_combinations_name_the_field():
    cases = [({"variant": "wgan", "reg": "roth"}, "reg"), ({"variant": "lsgan", "reg": "roth"}, "reg"),
             ({"variant": "wgan-gp", "reg": "r1"}, "reg"), ({"variant": "wgan", "lens": True}, "lens"),
             ({"data": "ring8", "model": "dcgan"}, "model"), ({"data": "digits", "model": "mlp"}, "model"),
             ({"gamma": -1.0}, "gamma"), ({"noise": float("nan")}, "noise"), ({"variant": "fgan:tv"}, "variant"),
             ({"resolution": 24}, "resolution"), ({"gamma_anneal": 0.01}, "gamma_anneal"), ({"ema": 1.0}, "ema"),
             ({"data": "nope"}, "data"), ({"steps": 0}, "steps")]
    for fields, name in cases:
        with pytest.raises(ConfigError, match=f"^{name}:"):
            TrainConfig(**fields).validate()


def snapshot(trainer):
    return copy.deepcopy(trainer.G), copy.deepcopy(trainer.D), torch.get_rng_state()


def assert_same_parameters(module, reference):
    for (name, p), q in zip(module.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-10, msg=name)


def test_ns_step_equals_hand_written_step(tmp_path):
    config = tiny_config(tmp_path, variant="ns", dtype="float64", batch_size=16, **DATA["toy"])
    trainer = Trainer(config)
    G, D, rng = snapshot(trainer)
    trainer.iteration()

    torch.set_rng_state(rng)
    real = data.get_dataset("ring8", seed=config.seed)
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    x_real = real.sample(16).double()
    with torch.no_grad():
        x_fake = G(torch.randn(16, config.z_dim, dtype=torch.float64))
    d_loss = losses.d_loss("ns", D(x_real), D(x_fake))
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()
    g_loss = losses.g_loss("ns", D(G(torch.randn(16, config.z_dim, dtype=torch.float64))))
    opt_g.zero_grad()
    g_loss.backward()
    opt_g.step()
    assert_same_parameters(trainer.D, D)
    assert_same_parameters(trainer.G, G)


def test_wgan_gp_step_equals_hand_written_step(tmp_path):
    config = tiny_config(tmp_path, variant="wgan-gp", dtype="float64", batch_size=16, **DATA["toy"])
    trainer = Trainer(config)
    G, D, rng = snapshot(trainer)
    trainer.iteration()

    torch.set_rng_state(rng)
    real = data.get_dataset("ring8", seed=config.seed)
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-4, betas=(0.0, 0.9))
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-4, betas=(0.0, 0.9))
    for _ in range(5):  # n_critic of WGAN-GP
        x_real = real.sample(16).double()
        with torch.no_grad():
            x_fake = G(torch.randn(16, config.z_dim, dtype=torch.float64))
        penalty = regularizers.wgan_gp_penalty(D, x_real, x_fake).penalty
        loss = losses.d_loss("wgan-gp", D(x_real), D(x_fake)) + 10.0 * penalty
        opt_d.zero_grad()
        loss.backward()
        opt_d.step()
    g_loss = losses.g_loss("wgan-gp", D(G(torch.randn(16, config.z_dim, dtype=torch.float64))))
    opt_g.zero_grad()
    g_loss.backward()
    opt_g.step()
    assert_same_parameters(trainer.D, D)
    assert_same_parameters(trainer.G, G)


def test_wgan_critic_bursts():
    steps = Steps.__new__(Steps)
    steps.config, steps.n_critic = TrainConfig(variant="wgan", data="ring8", model="mlp"), 5
    counts = []
    for step in (0, 24, 25, 499, 500, 501):
        steps.step = step
        counts.append(steps.critic_steps())
    assert counts == [100, 100, 5, 5, 100, 5]


def test_run_folder_outputs_and_resume(tmp_path):
    config = tiny_config(tmp_path, steps=6, log_every=2, sample_every=3, checkpoint_every=3, **DATA["digits16"],
                         variant="ns", reg="roth")
    run = train(config)
    records = read_metrics(run)
    assert [r["step"] for r in records] == [2, 4, 6]
    for key in ("d_loss", "g_loss", "penalty", "d_grad_norm", "g_grad_norm", "gamma", "sigma", "wall_time"):
        assert all(math.isfinite(r[key]) for r in records), key
    assert records[0]["gamma"] == pytest.approx(0.1)
    assert sorted(p.name for p in (tmp_path / "run" / "samples").iterdir()) == ["step_000003.png", "step_000006.png"]
    assert (tmp_path / "run" / "config.yaml").exists()
    with pytest.raises(ConfigError, match="^out:"):
        train(config)
    resume(run, {"steps": 8})
    assert [r["step"] for r in read_metrics(run)] == [2, 4, 6, 8]


# --- Roth's protocol: batch-norm D, separate real/fake forwards, gamma per generator iteration ---------------

def test_batch_norm_dcgan_with_roth_does_not_degenerate(tmp_path):
    """Roth's penalty on a batch-norm DCGAN D (the authors' protocol, separate forwards) keeps a real game.

    With one joint forward on cat([x_real, x_fake]) (what fastreg did before) this run degenerates within
    100 steps: D separates the mixed batch (D loss 0.07) and yet calls a pure fake batch real (G loss 0.33,
    i.e. sigma(v_fake) ~ 0.7), so neither side learns. With separate forwards the D loss stays well above 0
    and the G loss above log 2: here D loss 0.24, G loss 2.4 at step 100 (digits 16x16, width 16)."""
    config = TrainConfig(variant="ns", reg="roth", gamma=2.0, gamma_anneal=0.01, data="digits", resolution=16,
                         width=16, steps=100, log_every=20, sample_every=1000, checkpoint_every=1000,
                         out=str(tmp_path / "run"))
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = Trainer(config)
        assert trainer.config.d_norm == "batch" and trainer.config.d_forward == "separate"
        trainer.train()
    finally:
        torch.set_num_threads(previous)
    last = read_metrics(config.out)[-1]
    assert last["step"] == 100
    assert last["d_loss"] > 0.1 and last["g_loss"] > 1.0, last
    # A joint forward on this D is refused, naming the option.
    with pytest.raises(ConfigError, match="^d_forward:.*batch norm"):
        Trainer(TrainConfig(**{**vars(config), "d_forward": "joint", "out": str(tmp_path / "joint")}))


def test_the_run_records_the_d_it_trained_and_prints_it(tmp_path, capsys):
    config = tiny_config(tmp_path, **DATA["digits16"], variant="ns", reg="roth")
    train(config)
    from fastreg.train.config import load_yaml

    saved = load_yaml(tmp_path / "run" / "config.yaml")
    assert (saved.d_norm, saved.d_forward) == ("batch", "separate")  # Roth keeps the DCGAN D's batch norm
    assert "D: dcgan width 8, batch norm" in capsys.readouterr().out
    gp = Trainer(tiny_config(tmp_path, **DATA["digits16"], variant="wgan-gp", out=str(tmp_path / "gp")))
    assert gp.config.d_norm == "none" and not any(isinstance(m, torch.nn.BatchNorm2d) for m in gp.D.modules())


def test_gamma_is_set_once_per_generator_iteration(tmp_path):
    """gamma_t = gamma_0 alpha^(t/T) with t the generator iteration, shared by its n_critic D steps."""
    config = tiny_config(tmp_path, **DATA["toy"], variant="ns", reg="roth", gamma=2.0, gamma_anneal=0.01,
                         n_critic=3, steps=4)
    trainer = Trainer(config)
    weights = []
    original = trainer.steps.d_update

    def spy(due, weight, inputs=None):
        weights.append(weight)
        return original(due, weight, inputs)

    trainer.steps.d_update = spy
    for _ in range(4):
        trainer.iteration()
    expected = [0.5 * 2.0 * 0.01 ** (t / 4) for t in range(4) for _ in range(3)]  # gamma/2 in the loss
    assert weights == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("warmup", [True, False])
def test_ema_ramps_in_as_hand_computed(warmup, tmp_path):
    """G_ema after 4 G steps equals the hand-written EMA with decay_t = min(ema, (1 + t) / (10 + t)) (ema_warmup),
    or ema throughout."""
    trainer = Trainer(tiny_config(tmp_path, dtype="float64", batch_size=16, ema=0.999, ema_warmup=warmup,
                                  **DATA["toy"]))
    ema = [p.detach().clone() for p in trainer.G_ema.parameters()]
    for t in range(4):
        trainer.iteration()
        decay = min(0.999, (1 + t) / (10 + t)) if warmup else 0.999
        assert trainer.ema_decay() == (min(0.999, (2 + t) / (11 + t)) if warmup else 0.999)
        ema = [decay * e + (1 - decay) * p.detach() for e, p in zip(ema, trainer.G.parameters())]
    for e, p in zip(ema, trainer.G_ema.parameters()):
        torch.testing.assert_close(p, e, rtol=1e-12, atol=1e-14)


def test_a_200_step_run_samples_its_trained_generator_not_the_initial_one(tmp_path, one_thread):
    """Issue 16: with a fixed decay of 0.999 the EMA of a 200-step run still holds 0.999^200 = 82% of the initial
    weights, so its samples sit next to the initial G's. Ramped in, they sit next to the trained G's."""
    trainer = Trainer(tiny_config(tmp_path, steps=200, batch_size=32, ema=0.999, **DATA["toy"]))
    initial = copy.deepcopy(trainer.G).eval()
    for _ in range(200):
        trainer.iteration()
    z = torch.randn(512, 4, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        shown, trained, start = trainer.sample(z), trainer.G.eval()(z), initial(z)
    to_trained, to_initial = (shown - trained).norm(dim=1).mean(), (shown - start).norm(dim=1).mean()
    assert to_trained < 0.25 * to_initial, (to_trained, to_initial)
