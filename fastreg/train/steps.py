"""The updates of one training iteration: D steps, the G step, the Tempered lens and VRAL's meta-discriminators.

:class:`Steps` holds what the updates touch (config, networks, optimizers, the non-finite guard, the
GradScaler, the real-data stream) and the two step counters, and runs them eagerly;
:class:`~fastreg.train.trainer.Trainer` builds it and owns the loop. With ``cuda_graphs`` the trainer hands
:meth:`Steps.d_step` and :meth:`Steps.g_step` the replays of :class:`~fastreg.train.cuda_graphs.CudaGraphSteps`
as ``replay``, which records :meth:`Steps.d_update` and :meth:`Steps.g_update` (the eager bodies) with what
a capture needs passed as arguments (``checks``, ``graphed``).

The regularized part of a D step is :func:`logits_and_penalty` (the regularizer row's penalty) and
:func:`d_loss` (the variant's loss plus the weighted penalty): the diagnostics' D training
(:func:`fastreg.diagnostics.discriminator.train_discriminator`) runs the same two functions.
"""

from __future__ import annotations

import contextlib
import math

import torch

from .. import losses, schedules
from ..regularizers import LazyRegularization, Penalty, clip_weights_, in_force, instance_noise
from . import build
from .nonfinite import NonFiniteGuard

PART_NAMES = ("G", "D", "G_ema", "lens", "meta_fake", "meta_real", "opt_g", "opt_d", "opt_lens", "opt_meta")
WGAN_WARMUP_G_STEPS, WGAN_WARMUP_CRITIC, WGAN_BURST_EVERY = 25, 100, 500  # Arjovsky et al. 2017


class Steps:
    """One iteration's updates; ``step`` counts generator steps done and ``d_steps`` discriminator steps.

    ``parts`` maps the checkpoint keys of the run's networks (G, D, and G_ema, lens, meta_fake, meta_real where
    it has them) and optimizers (opt_g, opt_d, and opt_lens, opt_meta), as ``Trainer.modules()`` does.
    Randomness is drawn in a fixed order from the global torch generator (latents, noise, interpolation
    weights) and from ``real``'s own generator (the real batches).
    """

    def __init__(self, config, parts: dict, guard: NonFiniteGuard, scaler, real, world, device: torch.device,
                 dtype: torch.dtype):
        self.config = c = config
        self.parts = {name: parts[name] for name in PART_NAMES if parts.get(name) is not None}
        self.G, self.D, self.G_ema = parts["G"], parts["D"], parts.get("G_ema")
        self.lens, self.meta_fake, self.meta_real = parts.get("lens"), parts.get("meta_fake"), parts.get("meta_real")
        self.opt_g, self.opt_d = parts["opt_g"], parts["opt_d"]
        self.opt_lens, self.opt_meta = parts.get("opt_lens"), parts.get("opt_meta")
        self.guard, self.scaler, self.real, self.world = guard, scaler, real, world
        self.device, self.dtype = device, dtype
        self.regularizer = in_force(c.variant, c.reg)  # the row of fastreg.regularizers.REGULARIZERS in force
        self.reg = self.regularizer.name
        self.n_critic = c.resolved("n_critic")
        self.gamma = build.gamma_schedule(c)  # a function of the generator iteration (self.step)
        self.sigma = build.noise_schedule(c)
        self.lazy = LazyRegularization(c.reg_every)
        self.lens_lambda = schedules.LensSchedule(c.lens_k)
        self.step = 0      # generator steps done
        self.d_steps = 0   # discriminator steps done
        self._last_real = None
        self._updated = self._parameters_by_optimizer()

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

    def critic_steps(self) -> int:
        """D steps before the next G step; WGAN's 100-step bursts when n_critic is its default."""
        if self.config.variant == "wgan" and self.config.n_critic is None:
            if self.step < WGAN_WARMUP_G_STEPS or self.step % WGAN_BURST_EVERY == 0:
                return WGAN_WARMUP_CRITIC
        return self.n_critic

    def end_iteration(self) -> None:
        """After an iteration's updates: count the G step; under torchrun without synced batch norm, rank 0's
        BatchNorm running statistics everywhere (as DDP does)."""
        self.step += 1
        if self.world.distributed and not self.config.sync_batchnorm:
            for module in (self.G, self.D, self.G_ema):
                self.world.broadcast_buffers_(module)

    def latent(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.config.z_dim, device=self.device, dtype=self.dtype)

    def autocast(self, graphed: bool = False):
        """The config's autocast; ``graphed`` (a step run by a CUDA graph): no cache of cast weights, which a
        captured step must not reuse across replays (PyTorch's AMP + graphs rule)."""
        amp = self.config.amp
        if amp == "none":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16,
                              cache_enabled=not graphed)

    def d_inputs(self, x_real: torch.Tensor | None = None, sigma=None,
                 graphed: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """A real and a fake batch as D sees them: lensed real, instance noise on both.

        ``x_real`` defaults to the stream's next batch and ``sigma`` to sigma_t; a captured step
        passes its static batch and a 0-d device tensor.
        """
        if x_real is None:
            x_real = self.real.next()
        self._last_real = x_real
        with torch.no_grad(), self.autocast(graphed):
            x_fake = self.G(self.latent(self.config.batch_size))
            if self.lens is not None:
                x_real = self.lens(x_real)
        # Under autocast G and the lens emit half precision; D's inputs stay in the parameter dtype.
        x_real, x_fake = x_real.to(self.dtype), x_fake.to(self.dtype)
        sigma = self.sigma(self.step) if sigma is None else sigma
        return _noisy(x_real, sigma), _noisy(x_fake, sigma)

    def d_step(self, replay=None) -> dict:
        """One D update: eager, or ``replay(x_real, sigma, due, weight)`` (a captured step's replay,
        :meth:`fastreg.train.cuda_graphs.CudaGraphSteps.d_step`) on the next real batch and sigma_t."""
        due = self.regularizer.has_penalty and self.lazy.due(self.d_steps)
        weight = self.lazy.weight(self.penalty_weight()) if due else 0.0  # a host number: no sync
        if replay is None:
            out = self.d_update(due, weight)
        else:
            out = replay(self.real.next(), self.sigma(self.step), due, weight)
        self.d_steps += 1
        return out

    def d_update(self, due: bool, weight, inputs: tuple | None = None, checks: list | None = None,
                 graphed: bool = False) -> dict:
        """The D step's body: forward, penalty when ``due`` (times ``weight``), backward, guard, step.

        ``inputs`` = (real batch, sigma) for :meth:`d_inputs` (default: the next batch and sigma_t);
        ``weight`` and sigma are numbers, or 0-d device tensors in a captured step. ``checks`` and ``graphed``:
        see :meth:`optimize` and :meth:`autocast`. The values it returns are detached device tensors; nothing
        here reads a value on the host.
        """
        c = self.config
        x_real, x_fake = self.d_inputs(*(inputs or ()), graphed=graphed)
        with self.autocast(graphed):
            terms = logits_and_penalty(self.D, x_real, x_fake, self.regularizer, due, variant=c.variant,
                                       forward=c.d_forward, scaler=self.scaler, penalty_grad=c.penalty_grad,
                                       fraction=c.reg_fraction)
        if self.meta_fake is not None:
            self.meta_step(terms.v_real.detach(), terms.v_fake.detach())
        with self.autocast(graphed):
            loss = d_loss(c.variant, terms, weight, **self.variant_options())
        watched = {"real_batch": peak(x_real), "fake_batch": peak(x_fake), "d_loss": loss}
        if terms.penalty is not None:
            watched["penalty"] = terms.penalty
        self.optimize(self.opt_d, loss, watched, checks)
        after_d_update(self.D, c.variant)
        nan = torch.full((), math.nan, device=self.device)
        return {"d_loss": loss.detach(), "penalty": terms.penalty.detach() if terms.penalty is not None else nan}

    def penalty_weight(self) -> float:
        """The penalty's factor in the D loss at this generator iteration: gamma_t / 2 for Roth, R1, R2,
        lambda for the WGAN-GP penalties (the row's ``loss_factor``)."""
        return self.regularizer.loss_weight(self.gamma(self.step))

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

    def g_step(self, replay=None) -> dict:
        """One G update and the EMA update: eager, or ``replay(sigma, ema_weight)`` (a captured step's replay,
        :meth:`fastreg.train.cuda_graphs.CudaGraphSteps.g_step`) with sigma_t and 1 - decay_t."""
        if replay is None:
            return self.g_update(self.sigma(self.step))
        return replay(self.sigma(self.step), 1 - self.ema_decay())

    def ema_decay(self) -> float:
        """The generator EMA's decay for the update after G step t = ``self.step`` (0-based):
        ``min(ema, (1 + t) / (10 + t))`` with ``ema_warmup`` (TensorFlow's ExponentialMovingAverage with
        num_updates), else ``ema``. The ramp starts at 0.1 and reaches 0.999 at t = 8990; after T steps the
        initial G's weight in the EMA is prod_t decay_t (9! T! / (T + 9)!, 6e-16 at T = 200, instead of
        0.999^200 = 0.82 without it)."""
        c = self.config
        return min(c.ema, (1 + self.step) / (10 + self.step)) if c.ema_warmup else c.ema

    def g_update(self, sigma, ema_weight=None, checks: list | None = None, graphed: bool = False) -> dict:
        """The G step's body; ``sigma`` is sigma_t, a number or (captured step) a 0-d device tensor, and
        ``ema_weight`` the EMA's 1 - decay_t (default: from :meth:`ema_decay`; a captured step: a 0-d tensor).
        ``checks`` and ``graphed`` as for :meth:`d_update`."""
        self.D.requires_grad_(False)
        try:
            with self.autocast(graphed):
                x_fake = _noisy(self.G(self.latent(self.config.batch_size)), sigma)
                loss = losses.g_loss(self.config.variant, self.D(x_fake), **self.variant_options())
            self.optimize(self.opt_g, loss, {"g_loss": loss}, checks)
        finally:
            self.D.requires_grad_(True)
        if self.G_ema is not None:
            update_ema(self.G_ema, self.G, 1 - self.ema_decay() if ema_weight is None else ema_weight)
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

    def optimize(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor, watched: dict | None = None,
                 checks: list | None = None) -> bool:
        """zero_grad, backward, average the gradients over the ranks, check them and ``watched``
        (name -> tensor, e.g. the losses) for NaN/inf, step. False when the update was skipped.

        ``checks``: a list while a CUDA graph records this update; the guard's (names, values) are appended to
        it (the graph's owner hands them to the guard after each replay) and the optimizer steps unconditionally.
        """
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
        if checks is not None:  # recording a CUDA graph: the guard gets the values after each replay
            checks.append((names, NonFiniteGuard.watched_values(scalars, grads)))
            optimizer.step()  # no GradScaler here: amp=fp16 is not captured
            return True
        if not self.guard.check(self.step, names, NonFiniteGuard.watched_values(scalars, grads)):
            optimizer.zero_grad(set_to_none=True)
            return False
        self.scaler.step(optimizer)
        self.scaler.update()
        return True


def logits_and_penalty(D, x_real, x_fake, regularizer, due: bool, *, variant: str, forward: str = "auto",
                       scaler=None, penalty_grad: str = "exact", generator=None, fraction: float = 1.0) -> Penalty:
    """D's logits on both batches and, when ``due``, the regularizer row's penalty (None otherwise), reusing the
    penalty's forwards for the loss (:meth:`fastreg.regularizers.Regularizer.penalty`)."""
    if not due:
        return Penalty(None, D(x_real), D(x_fake))
    return regularizer.penalty(D, x_real, x_fake, variant=variant, forward=forward, scaler=scaler,
                               penalty_grad=penalty_grad, generator=generator, fraction=fraction)


def d_loss(variant: str, terms: Penalty, weight, **variant_options) -> torch.Tensor:
    """The D loss of a step: ``variant``'s loss on the logits of ``terms`` plus ``weight`` times its penalty."""
    loss = losses.d_loss(variant, terms.v_real, terms.v_fake, **variant_options)
    return loss if terms.penalty is None else loss + weight * terms.penalty


def after_d_update(D: torch.nn.Module, variant: str) -> None:
    """What follows a D update: WGAN's weight clipping (Arjovsky et al. 2017), for ``wgan`` only."""
    if variant == "wgan":
        clip_weights_(D)


def grads(module: torch.nn.Module) -> list[torch.Tensor]:
    """The gradients ``module``'s parameters hold."""
    return [p.grad for p in module.parameters() if p.grad is not None]


def grad_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """The L2 norm of all of ``grads`` together."""
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).float()


def _noisy(x: torch.Tensor, sigma) -> torch.Tensor:
    """Instance noise with sigma_t: a number (nothing drawn at 0) or a 0-d device tensor (a captured step)."""
    if isinstance(sigma, torch.Tensor) or sigma > 0:
        return instance_noise(x, sigma)
    return x


def peak(x: torch.Tensor) -> torch.Tensor:
    """max |x| as a detached scalar; NaN when x holds a NaN."""
    return x.detach().abs().amax()


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, weight) -> None:
    """p_ema <- (1 - weight) * p_ema + weight * p, weight = 1 - decay (a number or a 0-d tensor); buffers
    (BN statistics) copied."""
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.lerp_(p, weight)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)
