"""Training-step benchmarks: DCGAN 32x32, batch 64 (issue 9).

D steps on fixed real/fake batches (forward, penalty, backward, optimizer step). Each comparison uses
one D on both sides: the NS group trains Radford et al.'s DCGAN D with batch norm (as Roth et al.'s
code), the WGAN-GP group a critic without normalization (as Gulrajani et al.):
- ``ns``: unregularized non-saturating D step (the baseline of its group);
- ``ns_roth_fastreg``: Roth's Omega_JS with fastreg (D's forwards on the real and the fake batch shared by
  loss and penalty: separate forwards, as batch norm requires; fused op);
- ``ns_roth_anchor``: the same loss written the way reference implementations do it: a
  second D forward for the penalty, the weights and norms in plain PyTorch;
- ``ns_roth_lazy4``: fastreg Roth applied every 4th D step with weight x4 (4 steps timed, per-step mean;
  the same for its full iterations);
- ``wgan``: the critic step without a penalty (the baseline of the WGAN-GP group);
- ``wgan_gp_fastreg`` / ``wgan_gp_anchor``: WGAN-GP's D step with fastreg's penalty vs plain PyTorch.
Full iterations (n_critic D steps + G step) of the trainer for several variants (the D of each variant's
paper: batch norm for the NS family, none for WGAN-GP), plus the speed
options: ``ns_compiled`` (``compile="forward"``: G and D compiled, unregularized) and, on CUDA only,
``ns_roth_cuda_graphs`` / ``ns_cuda_graphs`` (``cuda_graphs=True``, timed after warm-up and capture).
Ratios (time / baseline time) come from one run: `make bench` then `make bench-report`.
"""

import pytest
import torch
import torch.nn.functional as F

from fastreg import losses, models, regularizers
from fastreg.train import cuda_graphs
from fastreg.train.config import TrainConfig
from fastreg.train.trainer import Trainer

from conftest import synchronized

BATCH, RESOLUTION, WIDTH = 64, 32, 64
D_STEP_ROUNDS, ITERATION_ROUNDS = 20, 10  # medians of this many timed calls (2 cores: OpenMP jitter)
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def make_d(device, norm):
    torch.manual_seed(0)
    D = models.DCGANDiscriminator(width=WIDTH, resolution=RESOLUTION, channels=3, norm=norm).to(device)
    return D, torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))


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


def ns_roth_fastreg_step(D, opt, x_real, x_fake, gamma=2.0, weight_scale=1.0):
    omega, v_real, v_fake = regularizers.roth_penalty(D, x_real, x_fake, "ns")
    step(opt, losses.d_loss("ns", v_real, v_fake) + weight_scale * gamma / 2 * omega)


def ns_roth_anchor_step(D, opt, x_real, x_fake, gamma=2.0):
    """Omega_JS as reference code writes it: loss forward, then a separate penalty forward."""
    v_real, v_fake = D(x_real), D(x_fake)
    loss = F.softplus(-v_real).mean() + F.softplus(v_fake).mean()
    xr, xf = x_real.detach().requires_grad_(), x_fake.detach().requires_grad_()
    pr, pf = D(xr), D(xf)
    gr, gf = torch.autograd.grad((pr.sum(), pf.sum()), (xr, xf), create_graph=True)
    nr = gr.flatten(1).norm(dim=1) ** 2
    nf = gf.flatten(1).norm(dim=1) ** 2
    omega = ((1 - torch.sigmoid(pr)) ** 2 * nr).mean() + (torch.sigmoid(pf) ** 2 * nf).mean()
    step(opt, loss + gamma / 2 * omega)


def ns_roth_lazy4_steps(D, opt, x_real, x_fake):
    """Four D steps, the penalty on the first only with weight x4 (lazy regularization, k = 4)."""
    ns_roth_fastreg_step(D, opt, x_real, x_fake, weight_scale=4.0)
    for _ in range(3):
        ns_step(D, opt, x_real, x_fake)


def wgan_step(D, opt, x_real, x_fake):
    step(opt, losses.d_loss("wgan-gp", D(x_real), D(x_fake)))


def wgan_gp_fastreg_step(D, opt, x_real, x_fake):
    loss = losses.d_loss("wgan-gp", D(x_real), D(x_fake))
    step(opt, loss + 10.0 * regularizers.gradient_penalty(D, x_real, x_fake))


def wgan_gp_anchor_step(D, opt, x_real, x_fake):
    loss = D(x_fake).mean() - D(x_real).mean()
    eps = torch.rand(x_real.shape[0], 1, 1, 1, device=x_real.device)
    x_hat = (eps * x_real + (1 - eps) * x_fake).requires_grad_()
    (g,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
    step(opt, loss + 10.0 * ((g.flatten(1).norm(dim=1) - 1) ** 2).mean())


# group -> (D's normalization, baseline, {impl: (step function, D steps per call)})
D_STEP_GROUPS = {
    "ns": ("batch", "ns", {"ns": (ns_step, 1), "ns_roth_fastreg": (ns_roth_fastreg_step, 1),
                           "ns_roth_anchor": (ns_roth_anchor_step, 1), "ns_roth_lazy4": (ns_roth_lazy4_steps, 4)}),
    "wgan-gp": ("none", "wgan", {"wgan": (wgan_step, 1), "wgan_gp_fastreg": (wgan_gp_fastreg_step, 1),
                                 "wgan_gp_anchor": (wgan_gp_anchor_step, 1)}),
}
D_STEP_CASES = [(group, impl) for group, (_, _, impls) in D_STEP_GROUPS.items() for impl in impls]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("group,impl", D_STEP_CASES, ids=[impl for _, impl in D_STEP_CASES])
def test_d_step(benchmark, group, impl, device):
    norm, baseline, impls = D_STEP_GROUPS[group]
    fn, steps_per_call = impls[impl]
    benchmark.group = f"{group} D step dcgan{RESOLUTION} ({norm} norm) batch{BATCH} {device}"
    benchmark.extra_info.update(impl=impl, baseline=baseline, device=device, steps_per_call=steps_per_call,
                                d_norm=norm)
    D, opt = make_d(device, norm)
    x_real, x_fake = batches(device)
    for _ in range(2):
        fn(D, opt, x_real, x_fake)
    benchmark.pedantic(synchronized(lambda: fn(D, opt, x_real, x_fake), device), rounds=D_STEP_ROUNDS,
                       warmup_rounds=1)


ITERATION_VARIANTS = {
    "ns": {"variant": "ns"}, "ns_roth": {"variant": "ns", "reg": "roth", "gamma": 2.0, "gamma_anneal": 0.01},
    "ns_roth_lazy4": {"variant": "ns", "reg": "roth", "reg_every": 4}, "wgan_gp": {"variant": "wgan-gp"},
    "lsgan": {"variant": "lsgan"}, "ns_r1": {"variant": "ns", "reg": "r1", "d_norm": "batch"},
    "ns_noise": {"variant": "ns", "noise": 0.1},
    "ns_compiled": {"variant": "ns", "compile": "forward"},
}
GRAPHED_VARIANTS = {  # CUDA only (on a CPU cuda_graphs falls back with a warning)
    "ns_cuda_graphs": {"variant": "ns", "cuda_graphs": True},
    "ns_roth_cuda_graphs": {"variant": "ns", "reg": "roth", "gamma": 2.0, "gamma_anneal": 0.01,
                            "cuda_graphs": True},
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
