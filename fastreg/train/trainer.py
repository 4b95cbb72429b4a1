"""One training loop for every GAN variant and add-on of docs/design.md section 3.

Per iteration: ``n_critic`` D steps (each optionally with instance noise, a
gradient penalty, lazy regularization, VRAL's meta-discriminator updates and
WGAN's weight clipping), one G step (with the generator EMA), then the
Tempered lens update when enabled. Randomness is drawn in a fixed order from
the global torch generator (latents, noise, interpolation weights) and from the
batch stream's own generator (real data), so a run is reproducible from its
seed and resumable from a checkpoint.

Under ``torchrun`` (see :mod:`fastreg.train.distributed`) every process runs this loop on its own
shard of the data; gradients are averaged across processes after each backward, metrics are
averaged before they are logged, and only rank 0 writes files. Every update is watched for
non-finite values (:mod:`fastreg.train.nonfinite`, ``on_nonfinite`` stop or skip).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import math
import os
import random
import time
import warnings
from dataclasses import replace

import numpy as np
import torch

from .. import losses, models, penalty_gradient, progress, regularizers, schedules
from ..regularizer_table import REGULARIZERS
from ..metrics.evaluation import Evaluator, describe
from . import build, cuda_graphs, distributed, resume_policy, run_lock
from .batches import BatchStream
from .checkpoint import DamagedCheckpointError, list_checkpoints, load_checkpoint, save_checkpoint
from .config import ConfigError, TrainConfig, from_dict, load_yaml, save_yaml, to_dict
from .metrics_log import MetricsLog, _jsonable
from .nonfinite import NonFiniteError, NonFiniteGuard
from .samples import save_sample_grid, save_scatter

SAMPLE_COUNT = 64
COMPILE_BACKEND = "inductor"  # torch.compile backend of config.compile (the tests use a faster one)
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
        # The D that is trained is written down: d_norm (the regularizer paper's default unless set) and,
        # for Roth's penalty, the forward mode (auto: separate when D has batch norm) go into config.yaml.
        self.config = c = config.validate().with_resolved_architecture()
        self.world = distributed.current()
        seed_everything(c.seed)
        self.device = build.device_of(c, self.world)
        self.dtype = torch.float64 if c.dtype == "float64" else torch.float32
        dataset = build.dataset_of(c)
        self.shape = build.sample_shape(dataset)
        self.real = BatchStream(dataset, c.batch_size, c.seed, self.device, self.dtype,
                                rank=self.world.rank, world_size=self.world.size)
        self.G, self.D = (m.to(self.device, self.dtype) for m in build.networks(c, self.shape))
        if c.sync_batchnorm and self.world.distributed:
            self.G, self.D = distributed.convert_sync_batchnorm(self.G), distributed.convert_sync_batchnorm(self.D)
        if REGULARIZERS[c.effective_reg()].shares_logits:
            try:  # joint forwards on a batch-norm D are refused (the mixed batch's statistics degenerate training)
                forward = regularizers.resolve_forward(self.D, c.d_forward)
            except ValueError as exc:
                raise ConfigError(f"d_forward: {str(exc).partition(': ')[2]} (set d_forward=separate or auto, or "
                                  f"d_norm=none or layer)") from None
            self.config = c = replace(c, d_forward=forward)
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False).eval() if c.ema > 0 else None
        self._compile_networks()
        capture = c.cuda_graphs and self._can_capture()
        self.opt_g = build.optimizer(c, self.G.parameters(), c.resolved("lr_g"), capturable=capture)
        self.opt_d = build.optimizer(c, self.D.parameters(), c.resolved("lr_d"), capturable=capture)
        self.reg = c.effective_reg()
        self.n_critic = c.resolved("n_critic")
        self.gamma = build.gamma_schedule(c)  # a function of the generator iteration (self.step)
        self.sigma = build.noise_schedule(c)
        self.lazy = regularizers.LazyRegularization(c.reg_every)
        self.lens = self.opt_lens = None
        self.lens_lambda = schedules.LensSchedule(c.lens_k)
        if c.lens:
            self.lens = models.Lens(channels=self.shape[0], width=c.lens_width).to(self.device, self.dtype)
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
        self.guard = NonFiniteGuard(c.on_nonfinite)
        self._check_every = c.nonfinite_check_every or (1 if self.device.type == "cpu" else c.log_every)
        self._updated = self._parameters_by_optimizer()
        self._captured_checks = None  # while a CUDA graph is recorded: the guard's (names, values) of each update
        self.graphs = cuda_graphs.CudaGraphSteps(self) if capture else None
        self._join_world()

    def _compile_networks(self) -> None:
        """config.compile: torch.compile G's forward ("generator"), or G's and D's ("forward").

        The modules are compiled in place (``nn.Module.compile``), so their state_dicts and the
        checkpoints do not change. Under a gradient penalty D is compiled only with penalty_grad
        finite-difference (the config refuses it otherwise): AOTAutograd's compiled backward cannot be
        differentiated again ("torch.compile with aot_autograd does not currently support double backward").
        """
        mode = self.config.compile
        if mode in ("generator", "forward"):
            self.G.compile(backend=COMPILE_BACKEND)
        if mode == "forward":
            if self.config.penalty_grad != "exact":
                penalty_gradient.keep_graphs_of_compiled_modules()
            self.D.compile(backend=COMPILE_BACKEND)

    def _can_capture(self) -> bool:
        """config.cuda_graphs: whether the steps can be captured here; warns once, naming why, when not."""
        reason = cuda_graphs.fallback_reason(self.config, self.device, self.world)
        if reason is not None:
            warnings.warn(f"cuda_graphs: {reason}; training with eager steps", stacklevel=3)
        return reason is None

    def _parameters_by_optimizer(self) -> dict:
        """id(optimizer) -> (gradient names for the non-finite guard, parameters), in optimizer order."""
        named = {}
        for prefix, module in (("G", self.G), ("D", self.D), ("lens", self.lens), ("meta_fake", self.meta_fake),
                               ("meta_real", self.meta_real)):
            if module is not None:
                named.update({id(p): f"grad {prefix}.{name}" for name, p in module.named_parameters()})
        out = {}
        for optimizer in (self.opt_g, self.opt_d, self.opt_lens, self.opt_meta):
            if optimizer is not None:
                params = [p for group in optimizer.param_groups for p in group["params"]]
                out[id(optimizer)] = ([named[id(p)] for p in params], params)
        return out

    def _join_world(self) -> None:
        """Under torchrun: rank 0's networks everywhere, then each rank's own random stream."""
        if not self.world.distributed:
            return
        for module in (self.G, self.D, self.G_ema, self.lens, self.meta_fake, self.meta_real):
            self.world.broadcast_module_(module)
        seed_everything(distributed.rank_seed(self.config.seed, self.world.rank))

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
            captured = self.graphs.last_grads if self.graphs is not None else {}
            out["d_grad_norm"] = _grad_norm(captured.get("D", _grads(self.D)))
            out["g_grad_norm"] = _grad_norm(captured.get("G", _grads(self.G)))
        self.step += 1
        if self.world.distributed and not self.config.sync_batchnorm:
            for module in (self.G, self.D, self.G_ema):  # BatchNorm running statistics, as DDP does
                self.world.broadcast_buffers_(module)
        return out

    def latent(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.config.z_dim, device=self.device, dtype=self.dtype)

    def autocast(self):
        amp = self.config.amp
        if amp == "none":
            return contextlib.nullcontext()
        # A captured step must not reuse autocast's cast weights across replays (PyTorch's AMP + graphs rule).
        return torch.autocast(self.device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16,
                              cache_enabled=self.graphs is None)

    def d_inputs(self, x_real: torch.Tensor | None = None, sigma=None) -> tuple[torch.Tensor, torch.Tensor]:
        """A real and a fake batch as D sees them: lensed real, instance noise on both.

        ``x_real`` defaults to the stream's next batch and ``sigma`` to sigma_t; a captured step
        passes its static batch and a 0-d device tensor.
        """
        if x_real is None:
            x_real = self.real.next()
        self._last_real = x_real
        with torch.no_grad(), self.autocast():
            x_fake = self.G(self.latent(self.config.batch_size))
            if self.lens is not None:
                x_real = self.lens(x_real)
        # Under autocast G and the lens emit half precision; D's inputs stay in the parameter dtype.
        x_real, x_fake = x_real.to(self.dtype), x_fake.to(self.dtype)
        sigma = self.sigma(self.step) if sigma is None else sigma
        return _noisy(x_real, sigma), _noisy(x_fake, sigma)

    def d_step(self) -> dict:
        """One D update: a replay of the captured step under cuda_graphs, else eager."""
        due = self.reg != "none" and self.lazy.due(self.d_steps)
        weight = self.lazy.weight(self.penalty_weight()) if due else 0.0  # a host number: no sync
        if self.graphs is not None:
            out = self.graphs.d_step(self.real.next(), self.sigma(self.step), weight, due)
        else:
            out = self.d_update(due, weight)
        self.d_steps += 1
        return out

    def d_update(self, due: bool, weight, inputs: tuple | None = None) -> dict:
        """The D step's body: forward, penalty when ``due`` (times ``weight``), backward, guard, step.

        ``inputs`` = (real batch, sigma) for :meth:`d_inputs` (default: the next batch and sigma_t);
        ``weight`` and sigma are numbers, or 0-d device tensors in a captured step. The values it
        returns are detached device tensors; nothing here reads a value on the host.
        """
        x_real, x_fake = self.d_inputs() if inputs is None else self.d_inputs(*inputs)
        with self.autocast():
            v_real, v_fake, penalty = self.logits_and_penalty(x_real, x_fake, due)
        if self.meta_fake is not None:
            self.meta_step(v_real.detach(), v_fake.detach())
        with self.autocast():
            loss = losses.d_loss(self.config.variant, v_real, v_fake, **self.variant_options())
        if penalty is not None:
            loss = loss + weight * penalty
        watched = {"real_batch": _peak(x_real), "fake_batch": _peak(x_fake), "d_loss": loss}
        if penalty is not None:
            watched["penalty"] = penalty
        self.optimize(self.opt_d, loss, watched)
        if self.config.variant == "wgan":
            regularizers.clip_weights_(self.D)
        nan = torch.full((), math.nan, device=self.device)
        return {"d_loss": loss.detach(), "penalty": penalty.detach() if penalty is not None else nan}

    def logits_and_penalty(self, x_real, x_fake, due: bool):
        """(v_real, v_fake, penalty or None); the penalty reuses the loss's D forward where it can."""
        D, scaler, how = self.D, self.scaler, self.config.penalty_grad
        if due and self.reg == "roth":
            omega, v_real, v_fake = regularizers.roth_penalty(D, x_real, x_fake, self.config.variant,
                                                              forward=self.config.d_forward, scaler=scaler,
                                                              penalty_grad=how)
            return v_real, v_fake, omega
        if due and self.reg == "r1":
            penalty, v_real = regularizers.r1_penalty(D, x_real, scaler=scaler, penalty_grad=how)
            return v_real, D(x_fake), penalty
        if due and self.reg == "r2":
            penalty, v_fake = regularizers.r2_penalty(D, x_fake, scaler=scaler, penalty_grad=how)
            return D(x_real), v_fake, penalty
        v_real, v_fake = D(x_real), D(x_fake)
        if due:  # gp, gp1 on interpolates
            penalty = regularizers.gradient_penalty(D, x_real, x_fake, one_sided=self.reg == "gp1", scaler=scaler,
                                                    penalty_grad=how)
            return v_real, v_fake, penalty
        return v_real, v_fake, None

    def penalty_weight(self) -> float:
        """The penalty's factor in the D loss at this generator iteration: gamma_t / 2 for Roth, R1, R2,
        lambda for the WGAN-GP penalties (``loss_factor`` of :data:`REGULARIZERS`)."""
        return REGULARIZERS[self.reg].loss_weight(self.gamma(self.step))

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
        self.optimize(self.opt_meta, loss, {"meta_loss": loss})

    def g_step(self) -> dict:
        """One G update and the EMA update: a replay of the captured step under cuda_graphs, else eager."""
        if self.graphs is not None:
            return self.graphs.g_step(self.sigma(self.step))
        return self.g_update(self.sigma(self.step))

    def ema_decay(self) -> float:
        """The generator EMA's decay for the update after G step t = ``self.step`` (0-based):
        ``min(ema, (1 + t) / (10 + t))`` with ``ema_warmup`` (TensorFlow's ExponentialMovingAverage with
        num_updates), else ``ema``. The ramp starts at 0.1 and reaches 0.999 at t = 8990; after T steps the
        initial G's weight in the EMA is prod_t decay_t (9! T! / (T + 9)!, 6e-16 at T = 200, instead of
        0.999^200 = 0.82 without it)."""
        c = self.config
        return min(c.ema, (1 + self.step) / (10 + self.step)) if c.ema_warmup else c.ema

    def g_update(self, sigma, ema_weight=None) -> dict:
        """The G step's body; ``sigma`` is sigma_t, a number or (captured step) a 0-d device tensor, and
        ``ema_weight`` the EMA's 1 - decay_t (default: from :meth:`ema_decay`; a captured step: a 0-d tensor)."""
        self.D.requires_grad_(False)
        try:
            with self.autocast():
                x_fake = _noisy(self.G(self.latent(self.config.batch_size)), sigma)
                loss = losses.g_loss(self.config.variant, self.D(x_fake), **self.variant_options())
            self.optimize(self.opt_g, loss, {"g_loss": loss})
        finally:
            self.D.requires_grad_(True)
        if self.G_ema is not None:
            _update_ema(self.G_ema, self.G, 1 - self.ema_decay() if ema_weight is None else ema_weight)
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
            self.optimize(self.opt_lens, loss, {"lens_loss": loss})
        finally:
            self.D.requires_grad_(True)

    def optimize(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor, watched: dict | None = None) -> bool:
        """zero_grad, backward, average the gradients over the ranks, check them and ``watched``
        (name -> tensor, e.g. the losses) for NaN/inf, step. False when the update was skipped."""
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        grad_names, params = self._updated[id(optimizer)]
        watched = watched or {"loss": loss}
        scalars = torch.stack([t.detach().double().reshape(()) for t in watched.values()])
        scalars = self.world.average_gradients_(params, scalars)
        names = list(watched)
        grads = []
        if not self.scaler.is_enabled():  # fp16: overflowing gradients are GradScaler's to skip
            named = [(n, p.grad) for n, p in zip(grad_names, params) if p.grad is not None]
            names += [n for n, _ in named]
            grads = [g for _, g in named]
        if self._captured_checks is not None:  # recording a CUDA graph: the guard gets the values after each replay
            self._captured_checks.append((names, NonFiniteGuard.watched_values(scalars, grads)))
            optimizer.step()  # no GradScaler here: amp=fp16 is not captured
            return True
        if not self.guard.check(self.step, names, NonFiniteGuard.watched_values(scalars, grads)):
            optimizer.zero_grad(set_to_none=True)
            return False
        self.scaler.step(optimizer)
        self.scaler.update()
        return True

    # --- the run --------------------------------------------------------------------------------

    def train(self) -> str:
        """Train up to config.steps generator steps; returns the run folder.

        Only rank 0 writes. Raises NonFiniteError under ``on_nonfinite=stop`` after writing the
        offending step's diagnostics; the newest checkpoint is then the last good one.
        """
        c, main = self.config, self.world.is_main
        if self.step >= c.steps:  # a resume asking for no more steps: say so, change nothing
            if main:
                print(f"fastreg: nothing to train: {c.out} is at step {self.step} and steps is {c.steps} (give "
                      f"--steps above {self.step} to continue it)", flush=True)
            return c.out
        if main:
            os.makedirs(c.out, exist_ok=True)
            save_yaml(c, os.path.join(c.out, "config.yaml"))
        log = MetricsLog(c.out, resumed_at=self.step) if main else None  # drops records after the checkpoint
        start, window, first_step = time.perf_counter(), _Window(self.device), self.step
        if main:
            print(f"{os.path.basename(c.out)}: {build.describe_networks(c)}", flush=True)
        bar = progress.bar(range(self.step, c.steps), initial=self.step, total=c.steps, desc=os.path.basename(c.out),
                           unit="step", **({} if main else {"disable": True}))
        postfix = {}  # losses, and the latest FID/KID (or toy metrics) once evaluated
        try:
            for _ in bar:
                logging_now = (self.step + 1) % c.log_every == 0 or self.step + 1 == c.steps
                window.add(self.iteration(record_norms=logging_now))
                if self.step % self._check_every == 0:
                    self.guard.flush()
                if logging_now:
                    record = self.log_record(window.mean_and_reset(self.world.mean), time.perf_counter() - start)
                    if main:
                        log.write(record)
                        postfix.update(d=f"{record['d_loss']:.3f}", g=f"{record['g_loss']:.3f}")
                        bar.set_postfix(postfix)
                        progress.plain_line(f"{c.out} step {self.step}/{c.steps}: d_loss {record['d_loss']:.4g} "
                                            f"g_loss {record['g_loss']:.4g} ({record['wall_time']:.0f} s)")
                if main and (self.step % c.sample_every == 0 or self.step == c.steps):
                    self.save_samples()
                if self.step % c.checkpoint_every == 0 or self.step == c.steps:
                    self.save_checkpoint()
                evaluation = self.evaluate_if_due(log) if main else None
                if evaluation:
                    postfix.update(_evaluation_postfix(evaluation))
                    bar.set_postfix(postfix)
        except NonFiniteError as error:
            if main:
                self.write_nonfinite_report(error)
            raise
        finally:
            bar.close()
            if log is not None:
                log.close()
        if main:
            print(self.summary_line(first_step, time.perf_counter() - start, record), flush=True)
        return c.out

    def summary_line(self, first_step: int, seconds: float, record: dict) -> str:
        """The one line a finished :meth:`train` prints: steps, time, final losses, where the outputs are."""
        c = self.config
        newest = list_checkpoints(c.out)
        return (f"fastreg: trained {c.out} from step {first_step} to {self.step} in {seconds:.0f} s "
                f"({(self.step - first_step) / max(seconds, 1e-9):.1f} steps/s); last logged d_loss "
                f"{record['d_loss']:.4g}, g_loss {record['g_loss']:.4g}; samples in {os.path.join(c.out, 'samples')}, "
                f"checkpoint {newest[-1] if newest else 'none'}")

    def log_record(self, means: dict, wall_time: float) -> dict:
        return {"step": self.step, **means, "gamma": self.gamma(self.step) if self.reg != "none" else 0.0,
                "sigma": self.sigma(self.step), "lens_lambda": self.lens_lambda(self.step) if self.lens else 0.0,
                "d_steps": self.d_steps, "wall_time": wall_time, "nonfinite_skipped": self.guard.skipped,
                "world_size": self.world.size}

    def save_checkpoint(self) -> str | None:
        """Check the pending non-finite flags, then write a checkpoint (rank 0); returns its path there."""
        self.guard.flush()
        state = self.state_dict()  # every rank: gathers the per-rank random states
        if not self.world.is_main:
            return None
        return save_checkpoint(state, self.config.out, self.step, self.config.keep_checkpoints)

    def write_nonfinite_report(self, error: NonFiniteError) -> str:
        """``<out>/nonfinite_step_<step>.json``: what was non-finite, every watched value of that update,
        the schedules, the parameters' largest magnitudes and the last good checkpoint."""
        c = self.config
        checkpoints = list_checkpoints(c.out)
        error.checkpoint = checkpoints[-1] if checkpoints else None
        report = {
            "tensor": error.tensor, "step": error.step, "update": error.update,
            "detected_at_update": error.detected_at, "policy": c.on_nonfinite,
            "non_finite": [name for name, value in error.values.items() if not math.isfinite(value)],
            "values": error.values, "d_steps": self.d_steps,
            "learning_rates": {name: [g["lr"] for g in opt.param_groups] for name, opt in self.modules().items()
                               if isinstance(opt, torch.optim.Optimizer)},
            "gamma": self.gamma(self.step) if self.reg != "none" else 0.0, "sigma": self.sigma(self.step),
            "parameter_peaks": {name: _module_peaks(part) for name, part in self.modules().items()
                                if isinstance(part, torch.nn.Module)},
            "last_good_checkpoint": error.checkpoint, "world_size": self.world.size, "config": to_dict(c),
        }
        os.makedirs(c.out, exist_ok=True)
        error.diagnostics = os.path.join(c.out, f"nonfinite_step_{error.step:06d}.json")
        with open(error.diagnostics, "w") as f:
            json.dump(_jsonable_tree(report), f, indent=1)
        return error.diagnostics

    @functools.cached_property
    def evaluator(self) -> Evaluator:
        """Scores the EMA generator (see :mod:`fastreg.metrics.evaluation`); built on first use."""
        c = self.config
        return Evaluator(self.real.dataset, c.data, c.z_dim, c.eval_samples, c.eval_extractor, self.device,
                         seed=c.seed, root=c.data_root)

    def evaluate_if_due(self, log: MetricsLog) -> dict | None:
        """Every eval_every steps and at the last: FID/KID (or toy metrics) of the EMA generator into the log
        (metrics.jsonl and TensorBoard); returns the record when it evaluated.

        The evaluator draws from its own generators, so evaluating does not change the run's trajectory.
        """
        from tqdm.auto import tqdm

        c = self.config
        if c.eval_every and (self.step % c.eval_every == 0 or self.step == c.steps):
            record = {"step": self.step, **self.evaluator(lambda z: self.sample(z.to(self.device, self.dtype)))}
            log.write(record)
            tqdm.write(f"{os.path.basename(c.out)} step {self.step}: {describe(record)}")
            return record
        return None

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
            reference = _reference_points(self.real.dataset)
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
        """Everything a resume needs. The schedules are functions of (config, step, d_steps); the
        random states are this rank's (``rng``) and, under torchrun, every rank's (``rng_ranks``).
        A collective under torchrun: every rank must call it."""
        rng = _rng_state()
        state = {
            "step": self.step, "d_steps": self.d_steps, "config": to_dict(self.config),
            **{name: part.state_dict() for name, part in self.modules().items()},
            "data": self.real.state_dict(), "rng": rng,
            "nonfinite": self.guard.state_dict(), "sample_shape": list(self.shape), "world_size": self.world.size,
        }
        if self.world.distributed:
            state["rng_ranks"] = self.world.gather(rng)
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore a checkpoint; ConfigError when it does not fit this config's data or networks."""
        self._check_fits(state)
        for name, part in self.modules().items():
            try:
                part.load_state_dict(state[name])
            except (KeyError, RuntimeError, ValueError) as exc:
                raise ConfigError(f"resume: the checkpoint's {name} does not fit the config "
                                  f"({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
        self.step, self.d_steps = int(state["step"]), int(state["d_steps"])
        self.real.load_state_dict(state["data"])
        if "nonfinite" in state:
            self.guard.load_state_dict(state["nonfinite"])
        self._restore_rng(state)
        self._apply_config_learning_rates()
        for part in self.modules().values():  # the saved optimizers may have been (not) capturable
            if isinstance(part, torch.optim.Optimizer):
                cuda_graphs.set_capturable(part, self.graphs is not None)
        if self.graphs is not None:  # the captured steps point at the replaced optimizer states: capture anew
            self.graphs = cuda_graphs.CudaGraphSteps(self)

    def _apply_config_learning_rates(self) -> None:
        """The config's learning rates and Adam betas win over the ones saved with the optimizers, so a
        resume can change them (``--resume RUN --lr-d 1e-4 --betas 0 0.9``); unchanged, they are the same."""
        c = self.config
        rates = {"opt_g": c.resolved("lr_g"), "opt_d": c.resolved("lr_d"), "opt_lens": c.resolved("lr_d"),
                 "opt_meta": c.resolved("lr_d")}
        for name, optimizer in self.modules().items():
            if name in rates:
                for group in optimizer.param_groups:
                    group["lr"] = rates[name]
                    if "betas" in group:
                        group["betas"] = tuple(c.resolved("betas"))

    def _check_fits(self, state: dict) -> None:
        saved = state.get("sample_shape")
        if saved is not None and tuple(saved) != tuple(self.shape):
            what = "channels" if len(saved) == 3 == len(self.shape) and saved[0] != self.shape[0] else "shape"
            raise ConfigError(f"data: the checkpoint's networks take samples of shape {tuple(saved)}, but data "
                              f"{self.config.data!r} gives {tuple(self.shape)} (different {what}); resume with "
                              f"the run's data, or start a new run")

    def _restore_rng(self, state: dict) -> None:
        """This rank's saved random state; a resume on another number of processes gives ranks > 0
        fresh streams (rank 0 continues its own)."""
        ranks = state.get("rng_ranks")
        if ranks is not None and len(ranks) == self.world.size:
            _set_rng_state(ranks[self.world.rank])
        elif self.world.rank == 0:
            _set_rng_state(state["rng"])
        else:
            seed_everything(distributed.rank_seed(self.config.seed + self.step, self.world.rank))


def train(config: TrainConfig) -> str:
    """Train a new run in config.out (which must not hold one already); joins torchrun's processes.

    Holds the folder's lock (:mod:`fastreg.train.run_lock`) for the whole run."""
    with distributed.process_group(config.device) as world, run_lock.holding(config.out, world, "out"):
        if list_checkpoints(config.out):
            raise ConfigError(f"out: {config.out} already holds a run; resume it with --resume or choose another "
                              f"--out")
        return Trainer(config).train()


def resume(run_dir: str, overrides: dict | None = None) -> str:
    """Continue the run in run_dir from its newest good checkpoint, under the folder's lock.

    ``overrides`` (config fields) are checked by :mod:`fastreg.train.resume_policy`: a field a resume can
    change is applied, any other change is refused with ConfigError before anything is written.
    metrics.jsonl keeps the records up to the checkpoint's step (the redone steps are logged once).
    """
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"resume: run folder {run_dir} does not exist")
    device = (overrides or {}).get("device") or _recorded_device(run_dir)
    with distributed.process_group(device) as world, run_lock.holding(run_dir, world, "resume"):
        state = load_latest_state(run_dir)
        config = resume_policy.resumed_config(state["config"], run_dir, state["step"], overrides)
        trainer = Trainer(config)
        trainer.load_state_dict(state)
        return trainer.train()


def _recorded_device(run_dir: str) -> str:
    """The device in run_dir's config.yaml (it picks torchrun's backend before a checkpoint is read)."""
    try:
        return load_yaml(os.path.join(run_dir, "config.yaml")).device
    except Exception:  # a missing or damaged config.yaml: the checkpoint's config decides later
        return "auto"


def load_latest_state(run_dir: str) -> dict:
    """The newest checkpoint of run_dir that is intact and complete (:mod:`fastreg.train.state_check`); a
    damaged one, whatever the damage, is warned about and the one before it tried. An unsafe one (an
    intact file whose pickle names code) is refused outright, with UnsafeCheckpointError."""
    return newest_good_checkpoint(run_dir)[1]


def newest_good_checkpoint(run_dir: str) -> tuple[str, dict]:
    """(path, state) of :func:`load_latest_state`'s checkpoint."""
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"resume: run folder {run_dir} does not exist")
    paths = list_checkpoints(run_dir)
    if not paths:
        raise FileNotFoundError(f"resume: no checkpoint in {os.path.join(run_dir, 'checkpoints')}")
    for path in reversed(paths[1:]):
        try:
            return path, _training_state(path)
        except DamagedCheckpointError as exc:
            warnings.warn(f"{exc}; trying the one before it", stacklevel=3)
    try:
        return paths[0], _training_state(paths[0])
    except DamagedCheckpointError as exc:
        if len(paths) == 1:
            raise
        raise DamagedCheckpointError(f"{exc}; it was the oldest of {len(paths)}: no checkpoint of {run_dir} "
                                     f"is intact") from None


def _training_state(path: str) -> dict:
    from .state_check import check_training_state

    return check_training_state(load_checkpoint(path), path)


def load_trainer(run_dir: str, checkpoint: str | None = None, overrides: dict | None = None) -> Trainer:
    """The run in run_dir as of ``checkpoint`` (default: its newest good one), ready to sample or diagnose."""
    state = _training_state(checkpoint) if checkpoint else load_latest_state(run_dir)
    trainer = Trainer(replace(from_dict(state["config"]), out=run_dir, **(overrides or {})))
    trainer.load_state_dict(state)
    return trainer


# --- helpers ------------------------------------------------------------------------------------

def _evaluation_postfix(record: dict) -> dict:
    """Progress-bar fields of an evaluation, kept short so the bar keeps its width: ``fid``, ``kid`` (the
    extractor is named in the evaluation's own line above the bar), ``w1`` and ``modes`` for toy data."""
    short = {}
    for key, value in record.items():
        kind, _, name = key.partition("/")
        if kind in ("fid", "kid") and name:
            short[kind] = f"{value:.3g}"
        elif key in ("wasserstein_1", "modes_covered"):
            short["w1" if key == "wasserstein_1" else "modes"] = f"{value:.3g}"
    return short


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

    def mean_and_reset(self, reduce=None) -> dict:
        """Means since the last call; ``reduce`` (e.g. the mean over ranks) applies to the stacked values."""
        keys = list(self.sums) + list(self.last)
        values = torch.stack([*(self.sums[k] / self.count for k in self.sums), *self.last.values()])
        values = (reduce(values) if reduce is not None else values).tolist()
        self.sums, self.count, self.last = {}, 0, {}
        return dict(zip(keys, values))


def _grads(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.grad for p in module.parameters() if p.grad is not None]


def _grad_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """The L2 norm of all of ``grads`` together."""
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).float()


def _noisy(x: torch.Tensor, sigma) -> torch.Tensor:
    """Instance noise with sigma_t: a number (nothing drawn at 0) or a 0-d device tensor (a captured step)."""
    if isinstance(sigma, torch.Tensor) or sigma > 0:
        return regularizers.instance_noise(x, sigma)
    return x


def _peak(x: torch.Tensor) -> torch.Tensor:
    """max |x| as a detached scalar; NaN when x holds a NaN."""
    return x.detach().abs().amax()


def _module_peaks(module: torch.nn.Module) -> dict:
    """Largest |entry| of each parameter (NaN or inf when it is non-finite)."""
    return {name: _peak(p).item() for name, p in module.named_parameters()}


def _jsonable_tree(value):
    """``value`` with non-finite floats as strings (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _jsonable_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable_tree(v) for v in value]
    return _jsonable(value)


def _reference_points(dataset, n: int = 1000) -> torch.Tensor | None:
    """n points of a toy mixture for a scatter plot, drawn without moving the training stream."""
    if not hasattr(dataset, "sample"):
        return None
    state = dataset.state_dict()
    points = dataset.sample(n)
    dataset.load_state_dict(state)
    return points


@torch.no_grad()
def _update_ema(ema: torch.nn.Module, model: torch.nn.Module, weight) -> None:
    """p_ema <- (1 - weight) * p_ema + weight * p, weight = 1 - decay (a number or a 0-d tensor); buffers
    (BN statistics) copied."""
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.lerp_(p, weight)
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
