"""One training loop for every GAN variant and add-on of DESIGN.md section 3.

Per iteration: ``n_critic`` D steps (each optionally with instance noise, a
gradient penalty, lazy regularization, VRAL's meta-discriminator updates and
WGAN's weight clipping), one G step (with the generator EMA), then the
Tempered lens update when enabled. Randomness is drawn in a fixed order from
the global torch generator (latents, noise, interpolation weights) and from the
batch stream's own generator (real data), so a run is reproducible from its
seed and resumable from a checkpoint.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import os
import random
import time
from dataclasses import replace

import numpy as np
import torch

from .. import losses, models, regularizers, schedules
from ..metrics.evaluation import Evaluator, describe
from . import build
from .batches import BatchStream
from .checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint
from .config import ConfigError, TrainConfig, from_dict, save_yaml, to_dict
from .metrics_log import MetricsLog
from .samples import save_sample_grid, save_scatter

SAMPLE_COUNT = 64
WGAN_WARMUP_G_STEPS, WGAN_WARMUP_CRITIC, WGAN_BURST_EVERY = 25, 100, 500  # Arjovsky et al. 2017


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Holds a run's networks, optimizers, schedules and data; :meth:`train` runs it.

    ``Trainer(config).train()`` trains ``config.steps`` generator steps and writes the run
    folder ``config.out``: ``config.yaml``, ``metrics.jsonl``, ``samples/step_NNNNNN.png``,
    ``checkpoints/`` and (with tensorboard installed) ``tensorboard/``.
    """

    def __init__(self, config: TrainConfig):
        self.config = c = config.validate()
        seed_everything(c.seed)
        self.device = build.device_of(c)
        self.dtype = torch.float64 if c.dtype == "float64" else torch.float32
        dataset = build.dataset_of(c)
        self.shape = build.sample_shape(dataset)
        self.real = BatchStream(dataset, c.batch_size, c.seed, self.device, self.dtype)
        self.G, self.D = (m.to(self.device, self.dtype) for m in build.networks(c, self.shape))
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False).eval() if c.ema > 0 else None
        self.opt_g = build.optimizer(c, self.G.parameters(), c.resolved("lr_g"))
        self.opt_d = build.optimizer(c, self.D.parameters(), c.resolved("lr_d"))
        self.reg = c.effective_reg()
        self.n_critic = c.resolved("n_critic")
        self.gamma = build.gamma_schedule(c, total_d_steps=c.steps * self.n_critic)
        self.sigma = build.noise_schedule(c)
        self.lazy = regularizers.LazyRegularization(c.reg_every)
        self.lens = self.opt_lens = None
        self.lens_lambda = schedules.LensSchedule(c.lens_k)
        if c.lens:
            self.lens = models.Lens(channels=self.shape[0]).to(self.device, self.dtype)
            self.opt_lens = build.optimizer(c, self.lens.parameters(), c.resolved("lr_d"))
        self.meta_fake = self.meta_real = self.opt_meta = None
        if c.variant == "vral":
            self.meta_fake, self.meta_real = (m.to(self.device, self.dtype) for m in models.make_meta_discriminators())
            meta_params = [*self.meta_fake.parameters(), *self.meta_real.parameters()]
            self.opt_meta = build.optimizer(c, meta_params, c.resolved("lr_d"))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=c.amp == "fp16")
        latent = torch.Generator().manual_seed(c.seed + 1)
        self.fixed_z = torch.randn(SAMPLE_COUNT, c.z_dim, generator=latent).to(self.device, self.dtype)
        self.step = 0      # generator steps done
        self.d_steps = 0   # discriminator steps done
        self._last_real = None

    # --- one iteration --------------------------------------------------------------------------

    def critic_steps(self) -> int:
        """D steps before the next G step; WGAN's 100-step bursts when n_critic is its default."""
        if self.config.variant == "wgan" and self.config.n_critic is None:
            if self.step < WGAN_WARMUP_G_STEPS or self.step % WGAN_BURST_EVERY == 0:
                return WGAN_WARMUP_CRITIC
        return self.n_critic

    def iteration(self, record_norms: bool = False) -> dict:
        """n_critic D steps, one G step, the lens step; returns detached tensors for the log."""
        for _ in range(self.critic_steps()):
            d_out = self.d_step()
        g_out = self.g_step()
        if self.lens is not None:
            self.lens_step()
        out = {**d_out, **g_out}
        if record_norms:
            out["d_grad_norm"] = _grad_norm(self.D)
            out["g_grad_norm"] = _grad_norm(self.G)
        self.step += 1
        return out

    def latent(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.config.z_dim, device=self.device, dtype=self.dtype)

    def autocast(self):
        amp = self.config.amp
        if amp == "none":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)

    def d_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A real and a fake batch as D sees them: lensed real, instance noise on both."""
        x_real = self._last_real = self.real.next()
        with torch.no_grad(), self.autocast():
            x_fake = self.G(self.latent(self.config.batch_size))
            if self.lens is not None:
                x_real = self.lens(x_real)
        sigma = self.sigma(self.step)
        if sigma > 0:
            x_real = regularizers.instance_noise(x_real, sigma)
            x_fake = regularizers.instance_noise(x_fake, sigma)
        return x_real, x_fake

    def d_step(self) -> dict:
        x_real, x_fake = self.d_inputs()
        due = self.reg != "none" and self.lazy.due(self.d_steps)
        with self.autocast():
            v_real, v_fake, penalty = self.logits_and_penalty(x_real, x_fake, due)
        if self.meta_fake is not None:
            self.meta_step(v_real.detach(), v_fake.detach())
        with self.autocast():
            loss = losses.d_loss(self.config.variant, v_real, v_fake, **self.variant_options())
        if penalty is not None:
            loss = loss + self.lazy.weight(self.penalty_weight()) * penalty
        self.optimize(self.opt_d, loss)
        if self.config.variant == "wgan":
            regularizers.clip_weights_(self.D)
        self.d_steps += 1
        nan = torch.full((), math.nan, device=self.device)
        return {"d_loss": loss.detach(), "penalty": penalty.detach() if penalty is not None else nan}

    def logits_and_penalty(self, x_real, x_fake, due: bool):
        """(v_real, v_fake, penalty or None); the penalty reuses the loss's D forward where it can."""
        D, scaler = self.D, self.scaler
        if due and self.reg == "roth":
            omega, v_real, v_fake = regularizers.roth_penalty(D, x_real, x_fake, self.config.variant, scaler=scaler)
            return v_real, v_fake, omega
        if due and self.reg == "r1":
            penalty, v_real = regularizers.r1_penalty(D, x_real, scaler=scaler)
            return v_real, D(x_fake), penalty
        if due and self.reg == "r2":
            penalty, v_fake = regularizers.r2_penalty(D, x_fake, scaler=scaler)
            return D(x_real), v_fake, penalty
        v_real, v_fake = D(x_real), D(x_fake)
        if due:  # gp, gp1 on interpolates
            penalty = regularizers.gradient_penalty(D, x_real, x_fake, one_sided=self.reg == "gp1", scaler=scaler)
            return v_real, v_fake, penalty
        return v_real, v_fake, None

    def penalty_weight(self) -> float:
        """gamma_t / 2 for Roth, R1, R2 (DESIGN 3); lambda for the WGAN-GP penalties."""
        gamma = self.gamma(self.d_steps)
        return gamma if self.reg in ("gp", "gp1") else gamma / 2

    def variant_options(self) -> dict:
        if self.config.variant == "vral":
            return {"meta_real": self.meta_real, "meta_fake": self.meta_fake, "mu_real": self.config.vral_mu_real}
        return {}

    def meta_step(self, y_real: torch.Tensor, y_fake: torch.Tensor) -> None:
        """VRAL: F tells N(mu_f, 1) from y_f, R tells N(mu_r, 1) from y_r (Grewal et al. 2018)."""
        c = self.config
        with self.autocast():
            loss = (losses.vral_meta_loss(self.meta_fake, y_fake, c.vral_mu_fake)
                    + losses.vral_meta_loss(self.meta_real, y_real, c.vral_mu_real))
        self.optimize(self.opt_meta, loss)

    def g_step(self) -> dict:
        self.D.requires_grad_(False)
        try:
            with self.autocast():
                x_fake = self.G(self.latent(self.config.batch_size))
                sigma = self.sigma(self.step)
                if sigma > 0:
                    x_fake = regularizers.instance_noise(x_fake, sigma)
                loss = losses.g_loss(self.config.variant, self.D(x_fake), **self.variant_options())
            self.optimize(self.opt_g, loss)
        finally:
            self.D.requires_grad_(True)
        if self.G_ema is not None:
            _update_ema(self.G_ema, self.G, self.config.ema)
        return {"g_loss": loss.detach()}

    def lens_step(self) -> None:
        """Tempered GAN: L_L = lambda_t * L_L^A + E||x - L(x)||^2 on the last real batch."""
        self.D.requires_grad_(False)
        try:
            x = self._last_real
            with self.autocast():
                x_lensed = self.lens(x)
                loss = losses.lens_loss(self.config.variant, self.D(x_lensed), x, x_lensed,
                                        self.lens_lambda(self.step))
            self.optimize(self.opt_lens, loss)
        finally:
            self.D.requires_grad_(True)

    def optimize(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()

    # --- the run --------------------------------------------------------------------------------

    def train(self) -> str:
        """Train up to config.steps generator steps; returns the run folder."""
        c = self.config
        os.makedirs(c.out, exist_ok=True)
        save_yaml(c, os.path.join(c.out, "config.yaml"))
        log = MetricsLog(c.out)
        start, window = time.perf_counter(), _Window(self.device)
        from tqdm.auto import tqdm

        bar = tqdm(range(self.step, c.steps), initial=self.step, total=c.steps, desc=os.path.basename(c.out),
                   unit="step", dynamic_ncols=True, disable=None)
        try:
            for _ in bar:
                logging_now = (self.step + 1) % c.log_every == 0 or self.step + 1 == c.steps
                window.add(self.iteration(record_norms=logging_now))
                if logging_now:
                    record = self.log_record(window.mean_and_reset(), time.perf_counter() - start)
                    log.write(record)
                    bar.set_postfix(d=f"{record['d_loss']:.3f}", g=f"{record['g_loss']:.3f}")
                if self.step % c.sample_every == 0 or self.step == c.steps:
                    self.save_samples()
                if self.step % c.checkpoint_every == 0 or self.step == c.steps:
                    save_checkpoint(self.state_dict(), c.out, self.step, c.keep_checkpoints)
                self.evaluate_if_due(log)
        finally:
            bar.close()
            log.close()
        return c.out

    def log_record(self, means: dict, wall_time: float) -> dict:
        return {"step": self.step, **means, "gamma": self.gamma(self.d_steps) if self.reg != "none" else 0.0,
                "sigma": self.sigma(self.step), "lens_lambda": self.lens_lambda(self.step) if self.lens else 0.0,
                "d_steps": self.d_steps, "wall_time": wall_time}

    @functools.cached_property
    def evaluator(self) -> Evaluator:
        """Scores the EMA generator (see :mod:`fastreg.metrics.evaluation`); built on first use."""
        c = self.config
        return Evaluator(self.real.dataset, c.data, c.z_dim, c.eval_samples, c.eval_extractor, self.device,
                         seed=c.seed, root=c.data_root)

    def evaluate_if_due(self, log: MetricsLog) -> None:
        """Every eval_every steps and at the last: FID/KID (or toy metrics) of the EMA generator into the log.

        The evaluator draws from its own generators, so evaluating does not change the run's trajectory.
        """
        from tqdm.auto import tqdm

        c = self.config
        if c.eval_every and (self.step % c.eval_every == 0 or self.step == c.steps):
            record = {"step": self.step, **self.evaluator(lambda z: self.sample(z.to(self.device, self.dtype)))}
            log.write(record)
            tqdm.write(f"{os.path.basename(c.out)} step {self.step}: {describe(record)}")

    def sample(self, z: torch.Tensor | None = None) -> torch.Tensor:
        """Samples of the EMA generator (the plain one when EMA is off) in eval mode."""
        G = self.G_ema if self.G_ema is not None else self.G
        was_training = G.training
        G.eval()
        with torch.no_grad():
            out = G(self.fixed_z if z is None else z)
        G.train(was_training)
        return out

    def save_samples(self) -> str:
        path = os.path.join(self.config.out, "samples", f"step_{self.step:06d}.png")
        samples = self.sample()
        if samples.dim() == 2:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            reference = self.real.dataset.sample(1000) if hasattr(self.real.dataset, "sample") else None
            save_scatter(samples.float().cpu(), path, reference=reference)
        else:
            save_sample_grid(samples, path)
        return path

    # --- checkpoints ----------------------------------------------------------------------------

    def modules(self) -> dict:
        named = {"G": self.G, "D": self.D, "G_ema": self.G_ema, "lens": self.lens, "meta_fake": self.meta_fake,
                 "meta_real": self.meta_real, "opt_g": self.opt_g, "opt_d": self.opt_d, "opt_lens": self.opt_lens,
                 "opt_meta": self.opt_meta, "scaler": self.scaler}
        return {name: part for name, part in named.items() if part is not None}

    def state_dict(self) -> dict:
        return {
            "step": self.step, "d_steps": self.d_steps, "config": to_dict(self.config),
            **{name: part.state_dict() for name, part in self.modules().items()},
            "data": self.real.state_dict(), "rng": _rng_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        for name, part in self.modules().items():
            part.load_state_dict(state[name])
        self.step, self.d_steps = int(state["step"]), int(state["d_steps"])
        self.real.load_state_dict(state["data"])
        _set_rng_state(state["rng"])


def train(config: TrainConfig) -> str:
    """Train a new run in config.out (which must not hold one already)."""
    if list_checkpoints(config.out):
        raise ConfigError(f"out: {config.out} already holds a run; resume it with --resume or choose another --out")
    return Trainer(config).train()


def resume(run_dir: str, overrides: dict | None = None) -> str:
    """Continue the run in run_dir from its newest checkpoint (overrides, e.g. steps, applied)."""
    state = load_checkpoint(latest_checkpoint(run_dir))
    config = replace(from_dict(state["config"]), out=run_dir, **(overrides or {}))
    trainer = Trainer(config)
    trainer.load_state_dict(state)
    return trainer.train()


def load_trainer(run_dir: str, checkpoint: str | None = None, overrides: dict | None = None) -> Trainer:
    """The run in run_dir as of ``checkpoint`` (default: its newest), ready to sample or diagnose."""
    state = load_checkpoint(checkpoint or latest_checkpoint(run_dir))
    trainer = Trainer(replace(from_dict(state["config"]), out=run_dir, **(overrides or {})))
    trainer.load_state_dict(state)
    return trainer


# --- helpers ------------------------------------------------------------------------------------

class _Window:
    """Running sums of logged tensors on the device; one host read per log line."""

    def __init__(self, device):
        self.sums, self.count, self.last = {}, 0, {}

    def add(self, values: dict) -> None:
        for key, value in values.items():
            if key.endswith("grad_norm"):
                self.last[key] = value
            else:
                self.sums[key] = self.sums.get(key, 0) + value
        self.count += 1

    def mean_and_reset(self) -> dict:
        keys = list(self.sums) + list(self.last)
        values = torch.stack([*(self.sums[k] / self.count for k in self.sums), *self.last.values()]).tolist()
        self.sums, self.count, self.last = {}, 0, {}
        return dict(zip(keys, values))


def _grad_norm(module: torch.nn.Module) -> torch.Tensor:
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).float()


@torch.no_grad()
def _update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """p_ema <- decay * p_ema + (1 - decay) * p; buffers (BN statistics) copied."""
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.lerp_(p, 1 - decay)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


def _rng_state() -> dict:
    version, mt_state, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "python": {"version": version, "state": list(mt_state), "gauss": gauss},
    }


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
