"""The trainer's speed options (issue 9): ``compile`` and ``cuda_graphs``.

compile: torch.compile'd forwards train like eager ones; compiling D under a gradient penalty is
refused, because torch.compile cannot differentiate a compiled backward again.
cuda_graphs: falls back to eager steps with one warning where it cannot capture (here on the
CPU: same results as without it); on a GPU the replayed steps agree with eager ones.
"""

import math

import pytest
import torch

from fastreg.train import cuda_graphs, trainer as trainer_module
from fastreg.train.config import ConfigError, TrainConfig
from fastreg.train.distributed import World
from fastreg.train.nonfinite import NonFiniteError
from fastreg.train.trainer import Trainer

TOY = {"data": "ring8", "model": "mlp", "z_dim": 4}
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def config(tmp_path, **fields) -> TrainConfig:
    defaults = dict(steps=10, batch_size=16, out=str(tmp_path / "run"), log_every=1, sample_every=1000,
                    checkpoint_every=1000, ema=0.9, **TOY)
    return TrainConfig(**{**defaults, **fields})


def run_iterations(cfg: TrainConfig, n: int) -> tuple[Trainer, list[dict]]:
    trainer = Trainer(cfg)
    outs = [trainer.iteration(record_norms=True) for _ in range(n)]
    return trainer, outs


def assert_same_run(a: Trainer, b: Trainer, outs_a, outs_b, rtol: float, atol: float) -> None:
    for name in ("G", "D", "G_ema"):
        for (key, p), q in zip(getattr(a, name).state_dict().items(), getattr(b, name).state_dict().values()):
            torch.testing.assert_close(p, q, rtol=rtol, atol=atol, msg=f"{name}.{key}")
    for out_a, out_b in zip(outs_a, outs_b):
        for key in out_a:
            if not math.isnan(out_a[key].item()):
                torch.testing.assert_close(out_a[key], out_b[key], rtol=rtol, atol=atol, msg=key)


# --- compile -------------------------------------------------------------------------------------

@pytest.fixture
def fast_compile(monkeypatch):
    """torch.compile with the aot_eager backend (AOTAutograd without code generation: seconds, not minutes,
    on a CPU); dynamo's caches are cleared afterwards so other tests see eager modules only."""
    import torch._dynamo

    monkeypatch.setattr(trainer_module, "COMPILE_BACKEND", "aot_eager")
    yield
    torch._dynamo.reset()


def test_compiled_d_cannot_be_differentiated_twice(fast_compile):
    """The torch behaviour behind compile='forward''s refusal; if a torch release supports it, lift the rule."""
    D = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    D.compile(backend="aot_eager")
    x = torch.randn(4, 2, requires_grad=True)
    (g,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="does not currently support double backward"):
        g.pow(2).sum().backward()


@pytest.mark.parametrize("fields", [{"variant": "wgan-gp"}, {"reg": "roth"}, {"reg": "r1", "reg_every": 4}])
def test_compiling_d_under_a_gradient_penalty_is_refused(fields, tmp_path):
    with pytest.raises(ConfigError, match=r"^compile: .*double backward.*compile=generator"):
        config(tmp_path, compile="forward", **fields).validate()


def test_compile_and_cuda_graphs_together_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="^compile: 'generator' together with cuda_graphs"):
        config(tmp_path, compile="generator", cuda_graphs=True).validate()


@pytest.mark.parametrize("fields", [{"compile": "generator", "reg": "roth"}, {"compile": "generator", "noise": 0.1},
                                    {"compile": "forward", "variant": "lsgan"}],
                         ids=["generator-roth", "generator-noise", "forward-lsgan"])
def test_compiled_forwards_train_like_eager(fields, tmp_path, fast_compile):
    eager, eager_outs = run_iterations(config(tmp_path, dtype="float64", **{**fields, "compile": "none"}), 3)
    compiled, compiled_outs = run_iterations(config(tmp_path, dtype="float64", **fields), 3)
    assert compiled.G._compiled_call_impl is not None
    assert (compiled.D._compiled_call_impl is not None) == (fields["compile"] == "forward")
    assert list(compiled.G.state_dict()) == list(eager.G.state_dict())  # checkpoints unchanged
    assert_same_run(eager, compiled, eager_outs, compiled_outs, rtol=1e-9, atol=1e-11)


def test_compile_generator_with_inductor(tmp_path):
    """The default backend, once: G compiled by inductor, Roth's penalty through the eager D, float32."""
    try:
        eager, eager_outs = run_iterations(config(tmp_path, reg="roth"), 2)
        compiled, compiled_outs = run_iterations(config(tmp_path, reg="roth", compile="generator"), 2)
    finally:
        import torch._dynamo

        torch._dynamo.reset()
    assert_same_run(eager, compiled, eager_outs, compiled_outs, rtol=1e-4, atol=1e-5)


# --- cuda_graphs: fallback ------------------------------------------------------------------------

def test_cuda_graphs_on_the_cpu_warns_once_and_trains_eagerly(tmp_path):
    eager, eager_outs = run_iterations(config(tmp_path, reg="roth", noise=0.1, device="cpu"), 3)
    with pytest.warns(UserWarning, match="^cuda_graphs: the device is cpu; .* training with eager steps") as caught:
        fallback, fallback_outs = run_iterations(config(tmp_path, reg="roth", noise=0.1, device="cpu",
                                                        cuda_graphs=True), 3)
    assert len([w for w in caught if "cuda_graphs" in str(w.message)]) == 1
    assert fallback.graphs is None
    assert_same_run(eager, fallback, eager_outs, fallback_outs, rtol=0, atol=0)


@pytest.mark.parametrize("fields,reason", [
    ({}, None), ({"reg": "roth", "reg_every": 4, "noise": 0.1, "gamma_anneal": 0.01}, None),
    ({"variant": "wgan"}, None), ({"variant": "wgan-gp", "amp": "bf16"}, None),
    ({"amp": "fp16"}, "GradScaler"), ({"on_nonfinite": "skip"}, "on_nonfinite=skip"),
    ({"variant": "vral"}, "VRAL"), ({"lens": True, "data": "digits", "model": "dcgan"}, "lens"),
])
def test_what_falls_back(fields, reason, tmp_path):
    cfg = config(tmp_path, **fields).validate()
    got = cuda_graphs.fallback_reason(cfg, torch.device("cuda"), World())
    assert got is None if reason is None else reason in got
    assert "CUDA device" in cuda_graphs.fallback_reason(cfg, torch.device("cpu"), World())
    assert "world size 2" in cuda_graphs.fallback_reason(cfg, torch.device("cuda"), World(rank=0, size=2))


def test_a_saved_capturable_optimizer_loads_into_an_eager_run(tmp_path):
    """A checkpoint of a cuda_graphs run (capturable optimizers) resumes eagerly, here on the CPU."""
    saved = Trainer(config(tmp_path, reg="roth"))
    saved.iteration()
    state = saved.state_dict()
    for name in ("opt_g", "opt_d"):
        for group in state[name]["param_groups"]:
            group["capturable"] = True
    trainer = Trainer(config(tmp_path, reg="roth"))
    trainer.load_state_dict(state)
    for opt in (trainer.opt_g, trainer.opt_d):
        assert not any(group["capturable"] for group in opt.param_groups)
        assert all(s["step"].device.type == "cpu" for s in opt.state.values())
    trainer.iteration()  # a capturable Adam would refuse CPU parameters


def _record_and_run(self, key, body):
    """Stands in for CudaGraphSteps._run on the CPU: runs ``body`` once with the trainer in recording mode (as in
    a capture: the guard's values are collected, the optimizer steps unconditionally), then hands the results on
    as after a replay. What it cannot check: the capture itself, static memory, replays."""
    steps = self.steps
    checks = []
    outputs = body(checks)
    module = steps.D if key[0] == "D" else steps.G
    captured = cuda_graphs._Captured(None, outputs, checks, [p.grad for p in module.parameters()])
    return self._results(captured, key[0])


def test_captured_step_bodies_train_like_eager_steps_on_the_cpu(tmp_path, monkeypatch):
    """The host side of the captured steps, on the CPU: the static real batch, sigma_t and the (annealed, lazy)
    penalty weight as 0-d tensors, the guard fed from the recorded values, copies of the outputs logged."""
    fields = dict(reg="roth", gamma_anneal=0.01, reg_every=2, noise=0.1, dtype="float64", device="cpu")
    eager, eager_outs = run_iterations(config(tmp_path, **fields), 4)
    monkeypatch.setattr(cuda_graphs, "fallback_reason", lambda *args: None)
    monkeypatch.setattr(torch.cuda, "Stream", lambda device: None)
    monkeypatch.setattr(cuda_graphs.CudaGraphSteps, "_run", _record_and_run)
    monkeypatch.setattr(trainer_module.build, "optimizer",  # capturable optimizers refuse CPU parameters
                        lambda c, params, lr, capturable=False: torch.optim.Adam(params, lr=lr,
                                                                                  betas=c.resolved("betas")))
    recorded, recorded_outs = run_iterations(config(tmp_path, cuda_graphs=True, **fields), 4)
    assert recorded.graphs is not None and recorded.guard.updates == eager.guard.updates == 8
    assert_same_run(eager, recorded, eager_outs, recorded_outs, rtol=1e-10, atol=1e-12)
    with pytest.raises(NonFiniteError, match="real_batch"):  # CPU values: the guard reads them at once
        recorded.graphs.d_step(recorded.real.next() * math.nan, 0.1, False, 0.0)


# --- cuda_graphs on a GPU ---------------------------------------------------------------------------

GRAPH_CASES = {
    "ns-roth": {"reg": "roth"},
    "ns-roth-annealed-lazy2": {"reg": "roth", "gamma_anneal": 0.01, "reg_every": 2},
    "wgan-gp": {"variant": "wgan-gp"},
    "ns-noise": {"noise": 0.1},
    "ns-roth-dcgan": {"reg": "roth", "data": "digits", "model": "dcgan", "resolution": 16, "width": 8, "z_dim": 8},
}


@needs_cuda
@pytest.mark.parametrize("fields", list(GRAPH_CASES.values()), ids=list(GRAPH_CASES))
def test_cuda_graph_steps_agree_with_eager_steps(fields, tmp_path):
    n = cuda_graphs.WARMUP_STEPS + 4
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True):
        eager, eager_outs = run_iterations(config(tmp_path, device="cuda", **fields), n)
        graphed, graphed_outs = run_iterations(config(tmp_path, device="cuda", cuda_graphs=True, **fields), n)
    assert graphed.graphs is not None and ("G",) in graphed.graphs.captured
    assert any(key[0] == "D" for key in graphed.graphs.captured)
    graphed.guard.flush()
    assert_same_run(eager, graphed, eager_outs, graphed_outs, rtol=1e-4, atol=1e-5)


@needs_cuda
def test_cuda_graph_steps_feed_the_non_finite_guard(tmp_path):
    """A NaN real batch after the capture reaches the guard through the graph's static values."""
    trainer = Trainer(config(tmp_path, device="cuda", cuda_graphs=True, reg="roth"))
    for _ in range(cuda_graphs.WARMUP_STEPS + 2):
        trainer.iteration()
    trainer.guard.flush()
    real_next = trainer.real.next
    trainer.real.next = lambda: real_next() * math.nan
    trainer.iteration()
    with pytest.raises(NonFiniteError, match="real_batch"):
        trainer.guard.flush()
