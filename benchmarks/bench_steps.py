"""Training-step benchmarks: DCGAN 32x32 and an attention D, batch 64 (issues 9 and 18).

D steps on fixed real/fake batches (forward, penalty, backward, optimizer step); each timed case also
records the peak memory of one step (``peak_mb``: the most bytes live at once beyond those live before the
step; on the CPU from the profiler's allocation records (:func:`peak_step_memory`), on CUDA
``max_memory_allocated``). Each group trains one D:

- ``roth`` groups (Roth's Omega_JS, NS loss): ``dcgan`` is Radford et al.'s DCGAN D with batch norm (as Roth
  et al.'s code: separate forwards on the real and the fake batch), ``attention`` is
  :class:`fastreg.models.TransformerDiscriminator` (patch 4, 2 SDPA blocks, width 64; no batch coupling,
  so one joint forward). Implementations:

  - ``ns``: the unregularized D step (the baseline);
  - ``roth_anchor``: the best plain-PyTorch code a careful user writes: one D forward per batch reused for
    the loss and the penalty, ``autograd.grad(create_graph=True)``, the weights and norms in torch ops (the
    *anchor* of the group: ``time / anchor`` compares with it);
  - ``roth_anchor_compiled``: the same with the penalty expression (weights and norms) ``torch.compile``'d;
  - ``roth_exact``: fastreg's ``roth_penalty`` (fused op, double backward);
  - ``roth_fd``: fastreg's ``roth_penalty(penalty_grad="finite-difference")`` (first-order autograd only);
  - ``roth_fd_compiled_d``: the same with D ``torch.compile``'d (inductor; compilation untimed);
  - ``roth_lazy4`` (dcgan only): exact Roth every 4th step with weight x4 (per-step mean of 4 steps);
  - ``roth_subbatch25``: exact Roth on a quarter of each batch's rows (``fraction=0.25``), the loss on all.

  The exact paths on the attention D run its math attention kernel (``attention="math"``): the fused
  kernel PyTorch picks on its own has no double backward. The finite-difference paths run the fused one.
- ``wgan-gp`` group (critic without normalization): ``wgan`` (no penalty, the baseline), ``wgan_gp_anchor``
  (plain PyTorch, the anchor), ``wgan_gp_fastreg`` (exact), ``wgan_gp_fd`` (finite-difference).

Full iterations (n_critic D steps + G step) of the trainer for several variants (the D of each variant's
paper: batch norm for the NS family, none for WGAN-GP), plus the speed
options: ``ns_compiled`` (``compile="forward"``: G and D compiled, unregularized) and, on CUDA only,
``ns_roth_cuda_graphs`` / ``ns_cuda_graphs`` (``cuda_graphs=True``, timed after warm-up and capture).
Ratios (time / baseline time) come from one run: `make bench` then `make bench-report`.
"""

import pytest
import torch
import torch.nn.functional as F

from fastreg import losses, models, penalty_gradient, regularizers
from fastreg.regularizer_table import REGULARIZERS
from fastreg.train import cuda_graphs
from fastreg.train.config import TrainConfig
from fastreg.train.trainer import Trainer

from conftest import peak_step_memory, synchronized

ROTH_ANNEALED = REGULARIZERS["roth"].preset(annealed=True)  # gamma0 = 2 annealed by alpha = 0.01

BATCH, RESOLUTION, WIDTH = 64, 32, 64
D_STEP_ROUNDS, ITERATION_ROUNDS = 20, 10  # medians of this many timed calls (2 cores: OpenMP jitter)
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
FD = "finite-difference"


def make_d(device, arch, attention="auto"):
    torch.manual_seed(0)
    if arch == "attention":
        D = models.TransformerDiscriminator(width=WIDTH, resolution=RESOLUTION, channels=3, attention=attention)
    else:
        D = models.DCGANDiscriminator(width=WIDTH, resolution=RESOLUTION, channels=3, norm=arch)
    return D.to(device), torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))


def batches(device):
    g = torch.Generator().manual_seed(1)
    x_real = torch.rand(BATCH, 3, RESOLUTION, RESOLUTION, generator=g) * 2 - 1
    x_fake = torch.rand(BATCH, 3, RESOLUTION, RESOLUTION, generator=g) * 2 - 1
    return x_real.to(device), x_fake.to(device)


def step(optimizer, loss):
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def ns_step(D, opt, x_real, x_fake):
    step(opt, losses.d_loss("ns", D(x_real), D(x_fake)))


def roth_step(D, opt, x_real, x_fake, gamma=ROTH_ANNEALED["gamma"], weight_scale=1.0, penalty_grad="exact"):
    omega, v_real, v_fake = regularizers.roth_penalty(D, x_real, x_fake, "ns", penalty_grad=penalty_grad)
    step(opt, losses.d_loss("ns", v_real, v_fake) + weight_scale * gamma / 2 * omega)


def roth_fd_step(D, opt, x_real, x_fake):
    roth_step(D, opt, x_real, x_fake, penalty_grad=FD)


def roth_js_expression(v_real, v_fake, g_real, g_fake):
    """Omega_JS in torch ops: E_P[(1 - sigma(v))^2 |g|^2] + E_Q[sigma(v)^2 |g|^2]."""
    n_real, n_fake = g_real.flatten(1).pow(2).sum(1), g_fake.flatten(1).pow(2).sum(1)
    return (torch.sigmoid(-v_real) ** 2 * n_real).mean() + (torch.sigmoid(v_fake) ** 2 * n_fake).mean()


_compiled_expression = {}


def roth_anchor_step(D, opt, x_real, x_fake, gamma=ROTH_ANNEALED["gamma"], expression=roth_js_expression):
    """The careful plain-PyTorch D step: one forward per batch (separate, as batch norm needs; joint for a D
    without batch coupling), reused for the loss and the penalty."""
    if regularizers.couples_batch(D):
        xr, xf = x_real.detach().requires_grad_(), x_fake.detach().requires_grad_()
        v_real, v_fake = D(xr), D(xf)
        g_real, g_fake = torch.autograd.grad(v_real.sum() + v_fake.sum(), (xr, xf), create_graph=True)
    else:
        x = torch.cat([x_real, x_fake]).requires_grad_()
        v = D(x)
        (g,) = torch.autograd.grad(v.sum(), x, create_graph=True)
        n = x_real.shape[0]
        v_real, v_fake, g_real, g_fake = v[:n], v[n:], g[:n], g[n:]
    loss = F.softplus(-v_real).mean() + F.softplus(v_fake).mean()
    step(opt, loss + gamma / 2 * expression(v_real, v_fake, g_real, g_fake))


def roth_anchor_compiled_step(D, opt, x_real, x_fake):
    if "fn" not in _compiled_expression:
        _compiled_expression["fn"] = torch.compile(roth_js_expression, dynamic=False)
    roth_anchor_step(D, opt, x_real, x_fake, expression=_compiled_expression["fn"])


def roth_subbatch25_step(D, opt, x_real, x_fake, gamma=ROTH_ANNEALED["gamma"]):
    omega, v_real, v_fake = REGULARIZERS["roth"].penalty(D, x_real, x_fake, variant="ns", fraction=0.25)
    step(opt, losses.d_loss("ns", v_real, v_fake) + gamma / 2 * omega)


def roth_lazy4_steps(D, opt, x_real, x_fake):
    """Four D steps, the penalty on the first only with weight x4 (lazy regularization, k = 4)."""
    roth_step(D, opt, x_real, x_fake, weight_scale=4.0)
    for _ in range(3):
        ns_step(D, opt, x_real, x_fake)


def wgan_step(D, opt, x_real, x_fake):
    step(opt, losses.d_loss("wgan-gp", D(x_real), D(x_fake)))


def wgan_gp_fastreg_step(D, opt, x_real, x_fake, penalty_grad="exact"):
    loss = losses.d_loss("wgan-gp", D(x_real), D(x_fake))
    step(opt, loss + 10.0 * regularizers.gradient_penalty(D, x_real, x_fake, penalty_grad=penalty_grad))


def wgan_gp_fd_step(D, opt, x_real, x_fake):
    wgan_gp_fastreg_step(D, opt, x_real, x_fake, penalty_grad=FD)


def wgan_gp_anchor_step(D, opt, x_real, x_fake):
    loss = D(x_fake).mean() - D(x_real).mean()
    eps = torch.rand(x_real.shape[0], 1, 1, 1, device=x_real.device)
    x_hat = (eps * x_real + (1 - eps) * x_fake).requires_grad_()
    (g,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
    step(opt, loss + 10.0 * ((g.flatten(1).norm(dim=1) - 1) ** 2).mean())


# impl -> (step function, D steps per call, D's attention kernel, compile D)
ROTH_IMPLS = {
    "ns": (ns_step, 1, "auto", False), "roth_anchor": (roth_anchor_step, 1, "math", False),
    "roth_anchor_compiled": (roth_anchor_compiled_step, 1, "math", False),
    "roth_exact": (roth_step, 1, "math", False), "roth_fd": (roth_fd_step, 1, "auto", False),
    "roth_fd_compiled_d": (roth_fd_step, 1, "auto", True), "roth_lazy4": (roth_lazy4_steps, 4, "math", False),
    "roth_subbatch25": (roth_subbatch25_step, 1, "math", False),
}
# group -> (D: "attention" or a DCGAN norm, baseline, anchor, {impl: ...})
D_STEP_GROUPS = {
    "roth dcgan": ("batch", "ns", "roth_anchor", ROTH_IMPLS),
    "roth attention": ("attention", "ns", "roth_anchor", {k: v for k, v in ROTH_IMPLS.items() if k != "roth_lazy4"}),
    "wgan-gp": ("none", "wgan", "wgan_gp_anchor", {
        "wgan": (wgan_step, 1, "auto", False), "wgan_gp_anchor": (wgan_gp_anchor_step, 1, "auto", False),
        "wgan_gp_fastreg": (wgan_gp_fastreg_step, 1, "auto", False),
        "wgan_gp_fd": (wgan_gp_fd_step, 1, "auto", False)}),
}
D_STEP_CASES = [(group, impl) for group, (_, _, _, impls) in D_STEP_GROUPS.items() for impl in impls]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("group,impl", D_STEP_CASES, ids=[f"{group}-{impl}".replace(" ", "-")
                                                          for group, impl in D_STEP_CASES])
def test_d_step(benchmark, group, impl, device):
    arch, baseline, anchor, impls = D_STEP_GROUPS[group]
    fn, steps_per_call, attention, compile_d = impls[impl]
    what = "attention D (vit patch4 depth2)" if arch == "attention" else f"dcgan D ({arch} norm)"
    benchmark.group = f"{group.split()[0]} D step {what} {RESOLUTION}x{RESOLUTION} batch{BATCH} {device}"
    D, opt = make_d(device, arch, attention)
    if compile_d:
        penalty_gradient.keep_graphs_of_compiled_modules()
        D.compile(backend="inductor")
    x_real, x_fake = batches(device)
    for _ in range(3 if compile_d else 2):  # untimed: warm-up, compilation
        fn(D, opt, x_real, x_fake)
    peak = peak_step_memory(lambda: fn(D, opt, x_real, x_fake), device) / steps_per_call
    benchmark.extra_info.update(impl=impl, baseline=baseline, anchor=anchor, device=device,
                                steps_per_call=steps_per_call, d_arch=arch, attention=attention,
                                compiled_d=compile_d, peak_mb=peak / 2 ** 20)
    benchmark.pedantic(synchronized(lambda: fn(D, opt, x_real, x_fake), device), rounds=D_STEP_ROUNDS,
                       warmup_rounds=1)


ITERATION_VARIANTS = {
    "ns": {"variant": "ns"}, "ns_roth": {"variant": "ns", **ROTH_ANNEALED},
    "ns_roth_lazy4": {"variant": "ns", "reg": "roth", "reg_every": 4}, "wgan_gp": {"variant": "wgan-gp"},
    "lsgan": {"variant": "lsgan"}, "ns_r1": {"variant": "ns", "reg": "r1", "d_norm": "batch"},
    "ns_noise": {"variant": "ns", "noise": 0.1},
    "ns_compiled": {"variant": "ns", "compile": "forward"},
    "ns_roth_fd": {"variant": "ns", **ROTH_ANNEALED, "penalty_grad": FD},
    "ns_roth_subbatch25": {"variant": "ns", **ROTH_ANNEALED, "reg_fraction": 0.25},
}
GRAPHED_VARIANTS = {  # CUDA only (on a CPU cuda_graphs falls back with a warning)
    "ns_cuda_graphs": {"variant": "ns", "cuda_graphs": True},
    "ns_roth_cuda_graphs": {"variant": "ns", **ROTH_ANNEALED, "cuda_graphs": True},
}


ITERATION_CASES = [
    *(pytest.param(impl, "cpu", id=f"{impl}-cpu") for impl in ITERATION_VARIANTS),
    *(pytest.param(impl, "cuda", marks=pytest.mark.cuda, id=f"{impl}-cuda")
      for impl in [*ITERATION_VARIANTS, *GRAPHED_VARIANTS]),
]


@pytest.mark.parametrize("impl,device", ITERATION_CASES)
def test_full_iteration(benchmark, impl, device, tmp_path):
    benchmark.group = f"iteration (D and G) dcgan{RESOLUTION} batch{BATCH} {device}"
    fields = {**ITERATION_VARIANTS, **GRAPHED_VARIANTS}[impl]
    # Lazy regularization penalizes one iteration in reg_every: time whole cycles, report the mean.
    per_call = fields.get("reg_every", 1)
    benchmark.extra_info.update(impl=impl, baseline="ns", device=device, steps_per_call=per_call)
    # The NS family trains one D (batch norm, Radford et al. and Roth et al.'s code; ns_r1 sets it, R1's own
    # default being none) so its ratios to ns compare like with like; WGAN-GP's critic has no normalization.
    config = TrainConfig(data="digits", resolution=RESOLUTION, width=WIDTH, batch_size=BATCH, device=device,
                         out=str(tmp_path / impl), **fields)
    benchmark.extra_info.update(d_norm=config.resolved("d_norm"))
    trainer = Trainer(config)
    # Untimed: compilation, and for cuda_graphs the eager warm-up steps and the captures.
    for _ in range(cuda_graphs.WARMUP_STEPS + 2 if config.cuda_graphs else 2):
        trainer.iteration()

    def iterations():
        for _ in range(per_call):
            trainer.iteration()

    benchmark.pedantic(synchronized(iterations, device), rounds=ITERATION_ROUNDS, warmup_rounds=1)
