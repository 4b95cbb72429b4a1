"""The training loop for every GAN variant and add-on of docs/design.md section 3.

Per iteration (:meth:`fastreg.train.steps.Steps.iteration`): ``n_critic`` D steps (each optionally with
instance noise, a gradient penalty, lazy regularization, VRAL's meta-discriminator updates and WGAN's
weight clipping), one G step (with the generator EMA), then the Tempered lens update when enabled.
Randomness is drawn in a fixed order from the global torch generator (latents, noise, interpolation
weights) and from the batch stream's own generator (real data), so a run is reproducible from its
seed and resumable from a checkpoint (:mod:`fastreg.train.state`).

Under ``torchrun`` (see :mod:`fastreg.train.distributed`) every process runs this loop on its own
shard of the data; gradients are averaged across processes after each backward, metrics are
averaged before they are logged, and only rank 0 writes files. Every update is watched for
non-finite values (:mod:`fastreg.train.nonfinite`, ``on_nonfinite`` stop or skip). To read a saved
run without training it, use :func:`fastreg.train.runs.open_run`.
"""

from __future__ import annotations

import copy
import functools
import os
import time
import warnings
from dataclasses import replace

import torch

from .. import models, progress
from ..metrics.evaluation import Evaluator
from ..regularizers import in_force, resolve_forward
from ..regularizers.finite_difference import keep_graphs_of_compiled_modules
from . import build, cuda_graphs, distributed, manifest, outputs, resume_policy, run_lock, state
from .batches import BatchStream
from .checkpoint import list_checkpoints, save_checkpoint
from .config import ConfigError, TrainConfig, from_dict, load_yaml, save_yaml
from .metrics_log import MetricsLog
from .nonfinite import NonFiniteError, NonFiniteGuard
from .runs import load_latest_state, training_state_of
from .steps import Steps, grad_norm, grads

SAMPLE_COUNT = outputs.SAMPLE_COUNT
COMPILE_BACKEND = "inductor"  # torch.compile backend of config.compile (the tests use a faster one)


class Trainer:
    """Builds a run's networks, optimizers, schedules and data from its config; :meth:`train` runs it.

    ``Trainer(config).train()`` trains ``config.steps`` generator steps and writes the run
    folder ``config.out``: ``config.yaml``, ``metrics.jsonl``, ``samples/step_NNNNNN.png``,
    ``checkpoints/`` and (with tensorboard installed) ``tensorboard/``. The updates are
    ``self.steps`` (:class:`~fastreg.train.steps.Steps`), which holds the networks, optimizers, guard, scaler
    and data stream (``trainer.G`` and the like read them there); the trainer owns the loop
    (:meth:`iteration`) and, under ``cuda_graphs``, the graphs that replay the steps (``self.graphs``).
    """

    def __init__(self, config: TrainConfig):
        # The D that is trained is written down: d_norm (the regularizer paper's default unless set) and,
        # for Roth's penalty, the forward mode (auto: separate when D has batch norm) go into config.yaml.
        self.config = c = config.validate().with_resolved_architecture()
        self.world = distributed.current()
        state.seed_everything(c.seed)
        self.device = build.device_of(c, self.world)
        self.dtype = torch.float64 if c.dtype == "float64" else torch.float32
        dataset = build.dataset_of(c)
        self.shape = build.sample_shape(dataset)
        real = BatchStream(dataset, c.batch_size, c.seed, self.device, self.dtype, rank=self.world.rank,
                           world_size=self.world.size)
        G, D = (m.to(self.device, self.dtype) for m in build.networks(c, self.shape))
        if c.sync_batchnorm and self.world.distributed:
            G, D = distributed.convert_sync_batchnorm(G), distributed.convert_sync_batchnorm(D)
        if in_force(c.variant, c.reg).shares_logits:
            try:  # joint forwards on a batch-norm D are refused (the mixed batch's statistics degenerate training)
                forward = resolve_forward(D, c.d_forward)
            except ValueError as exc:
                raise ConfigError(f"d_forward: {str(exc).partition(': ')[2]} (set d_forward=separate or auto, or "
                                  f"d_norm=none or layer)") from None
            self.config = c = replace(c, d_forward=forward)
        parts = {"G": G, "D": D, "G_ema": copy.deepcopy(G).requires_grad_(False).eval() if c.ema > 0 else None}
        _compile_networks(c, G, D)
        capture = c.cuda_graphs and self._can_capture()
        parts["opt_g"] = build.optimizer(c, G.parameters(), c.resolved("lr_g"), capturable=capture)
        parts["opt_d"] = build.optimizer(c, D.parameters(), c.resolved("lr_d"), capturable=capture)
        if c.lens:
            parts["lens"] = models.Lens(channels=self.shape[0], width=c.lens_width).to(self.device, self.dtype)
            parts["opt_lens"] = build.optimizer(c, parts["lens"].parameters(), c.resolved("lr_d"))
        if c.variant == "vral":
            parts["meta_fake"], parts["meta_real"] = (m.to(self.device, self.dtype)
                                                      for m in models.make_meta_discriminators())
            meta_params = [*parts["meta_fake"].parameters(), *parts["meta_real"].parameters()]
            parts["opt_meta"] = build.optimizer(c, meta_params, c.resolved("lr_d"))
        scaler = torch.amp.GradScaler(self.device.type, enabled=c.amp == "fp16")
        latent = torch.Generator().manual_seed(c.seed + 1)
        self.fixed_z = torch.randn(SAMPLE_COUNT, c.z_dim, generator=latent).to(self.device, self.dtype)
        guard = NonFiniteGuard(c.on_nonfinite)
        self._check_every = c.nonfinite_check_every or (1 if self.device.type == "cpu" else c.log_every)
        parts = {name: part for name, part in parts.items() if part is not None}
        self.steps = Steps(c, parts, guard, scaler, real, self.world, self.device, self.dtype)
        self.graphs = cuda_graphs.CudaGraphSteps(self.steps) if capture else None
        self._join_world()

    # The parts live in self.steps, once; these read them there.
    G = property(lambda self: self.steps.G, doc="The generator.")
    D = property(lambda self: self.steps.D, doc="The discriminator.")
    G_ema = property(lambda self: self.steps.G_ema, doc="The generator's EMA (None when ema is 0).")
    lens = property(lambda self: self.steps.lens, doc="The Tempered lens (None without it).")
    meta_fake = property(lambda self: self.steps.meta_fake, doc="VRAL's fake meta-discriminator (None without).")
    meta_real = property(lambda self: self.steps.meta_real, doc="VRAL's real meta-discriminator (None without).")
    opt_g = property(lambda self: self.steps.opt_g, doc="G's optimizer.")
    opt_d = property(lambda self: self.steps.opt_d, doc="D's optimizer.")
    opt_lens = property(lambda self: self.steps.opt_lens, doc="The lens's optimizer (None without it).")
    opt_meta = property(lambda self: self.steps.opt_meta, doc="The meta-discriminators' optimizer (None without).")
    scaler = property(lambda self: self.steps.scaler, doc="The GradScaler (enabled under amp=fp16).")
    guard = property(lambda self: self.steps.guard, doc="The non-finite guard.")
    real = property(lambda self: self.steps.real, doc="The real-data stream.")

    @property
    def step(self) -> int:
        """Generator steps done."""
        return self.steps.step

    @property
    def dataset(self):
        """The training data (what :class:`fastreg.train.runs.Run` calls it too, so readers take either)."""
        return self.real.dataset

    def _can_capture(self) -> bool:
        """config.cuda_graphs: whether the steps can be captured here; warns once, naming why, when not."""
        reason = cuda_graphs.fallback_reason(self.config, self.device, self.world)
        if reason is not None:
            warnings.warn(f"cuda_graphs: {reason}; training with eager steps", stacklevel=3)
        return reason is None

    def _join_world(self) -> None:
        """Under torchrun: rank 0's networks everywhere, then each rank's own random stream."""
        if not self.world.distributed:
            return
        for module in (self.G, self.D, self.G_ema, self.lens, self.meta_fake, self.meta_real):
            self.world.broadcast_module_(module)
        state.seed_everything(distributed.rank_seed(self.config.seed, self.world.rank))

    def modules(self) -> dict:
        """The run's networks, optimizers and GradScaler by checkpoint key (those it has)."""
        return {**self.steps.parts, "scaler": self.scaler}

    def iteration(self, record_norms: bool = False) -> dict:
        """n_critic D steps, one G step, the lens step (:attr:`steps`, replayed by :attr:`graphs` under
        cuda_graphs); returns detached tensors for the log."""
        steps, graphs = self.steps, self.graphs
        for _ in range(steps.critic_steps()):
            d_out = steps.d_step(graphs.d_step if graphs is not None else None)
        g_out = steps.g_step(graphs.g_step if graphs is not None else None)
        if self.lens is not None:
            steps.lens_step()
        out = {**d_out, **g_out}
        if record_norms:
            captured = graphs.last_grads if graphs is not None else {}
            out["d_grad_norm"] = grad_norm(captured.get("D", grads(self.D)))
            out["g_grad_norm"] = grad_norm(captured.get("G", grads(self.G)))
        steps.end_iteration()
        return out

    def ema_decay(self) -> float:
        """The generator EMA's decay of the next G step (:meth:`Steps.ema_decay`)."""
        return self.steps.ema_decay()

    def state_dict(self) -> dict:
        """Everything a resume needs (:func:`fastreg.train.state.training_state`); a collective under torchrun."""
        return state.training_state(self)

    def load_state_dict(self, saved: dict) -> None:
        """Restore a checkpoint; ConfigError when it does not fit this config's data or networks."""
        state.restore_training_state(self, saved)

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
            # a new run's id (a folder without checkpoints starts one); a resumed run keeps its own
            self.identity = manifest.ensure_identity(c.out, c, new=not list_checkpoints(c.out))
            save_yaml(c, os.path.join(c.out, "config.yaml"))
        log = MetricsLog(c.out, resumed_at=self.step) if main else None  # drops records after the checkpoint
        start, window, first_step = time.perf_counter(), outputs.Window(), self.step
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
                    record = outputs.log_record(self, window.mean_and_reset(self.world.mean),
                                                time.perf_counter() - start)
                    if main:
                        log.write(record)
                        postfix.update(d=f"{record['d_loss']:.3f}", g=f"{record['g_loss']:.3f}")
                        bar.set_postfix(postfix)
                        progress.plain_line(f"{c.out} step {self.step}/{c.steps}: d_loss {record['d_loss']:.4g} "
                                            f"g_loss {record['g_loss']:.4g} ({record['wall_time']:.0f} s)")
                if main and (self.step % c.sample_every == 0 or self.step == c.steps):
                    outputs.save_samples(self)
                if self.step % c.checkpoint_every == 0 or self.step == c.steps:
                    self.save_checkpoint()
                evaluation = outputs.evaluate_if_due(self, log) if main else None
                if evaluation:
                    postfix.update(outputs.evaluation_postfix(evaluation))
                    bar.set_postfix(postfix)
        except NonFiniteError as error:
            if main:
                outputs.write_nonfinite_report(self, error)
            raise
        finally:
            bar.close()
            if log is not None:
                log.close()
        if main:
            print(outputs.summary_line(self, first_step, time.perf_counter() - start, record), flush=True)
        return c.out

    def save_checkpoint(self) -> str | None:
        """Check the pending non-finite flags, then write a checkpoint (rank 0); returns its path there."""
        self.guard.flush()
        saved = self.state_dict()  # every rank: gathers the per-rank random states
        if not self.world.is_main:
            return None
        identity = getattr(self, "identity", None) or manifest.ensure_identity(self.config.out, self.config)
        return save_checkpoint(saved, self.config.out, self.step, self.config.keep_checkpoints, identity)

    @functools.cached_property
    def evaluator(self) -> Evaluator:
        """Scores the EMA generator (see :mod:`fastreg.metrics.evaluation`); built on first use."""
        c = self.config
        return Evaluator(self.real.dataset, c.data, c.z_dim, c.eval_samples, c.eval_extractor, self.device,
                         seed=c.seed, root=c.data_root)

    def sample(self, z: torch.Tensor | None = None) -> torch.Tensor:
        """Samples of the EMA generator (the plain one when EMA is off) in eval mode; default: the fixed latents."""
        return outputs.sample(self.G_ema if self.G_ema is not None else self.G, self.fixed_z if z is None else z)


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
    if os.path.isfile(run_dir):
        raise ConfigError(f"resume: {run_dir} is a file; --resume takes the run folder (the one holding "
                          f"checkpoints/ and config.yaml)")
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"resume: run folder {run_dir} does not exist")
    if not list_checkpoints(run_dir):  # before the lock: a folder that is no run is left as it was
        if os.path.exists(os.path.join(run_dir, run_lock.LOCK_NAME)):  # unless a writer is starting a run there
            run_lock.RunLock(run_dir, "resume").release()  # RunLockedError naming it when one holds the lock
        raise FileNotFoundError(f"resume: {run_dir} is not a fastreg run: no checkpoint in "
                                f"{os.path.join(run_dir, 'checkpoints')}")
    device = (overrides or {}).get("device") or _recorded_device(run_dir)
    with distributed.process_group(device) as world, run_lock.holding(run_dir, world, "resume"):
        saved = load_latest_state(run_dir)
        config = resume_policy.resumed_config(saved["config"], run_dir, saved["step"], overrides)
        trainer = Trainer(config)
        trainer.load_state_dict(saved)
        return trainer.train()


def load_trainer(run_dir: str, checkpoint: str | None = None, overrides: dict | None = None) -> Trainer:
    """The run in run_dir as of ``checkpoint`` (default: its newest good one) with its optimizers, ready to
    train on; to only read a run (sample, evaluate, diagnose) use :func:`fastreg.train.runs.open_run`."""
    saved = training_state_of(checkpoint, run_dir) if checkpoint else load_latest_state(run_dir)
    trainer = Trainer(replace(from_dict(saved["config"]), out=run_dir, **(overrides or {})))
    trainer.load_state_dict(saved)
    return trainer


def _recorded_device(run_dir: str) -> str:
    """The device in run_dir's config.yaml (it picks torchrun's backend before a checkpoint is read)."""
    try:
        return load_yaml(os.path.join(run_dir, "config.yaml")).device
    except Exception:  # a missing or damaged config.yaml: the checkpoint's config decides later
        return "auto"


def _compile_networks(config: TrainConfig, G: torch.nn.Module, D: torch.nn.Module) -> None:
    """config.compile: torch.compile G's forward ("generator"), or G's and D's ("forward").

    The modules are compiled in place (``nn.Module.compile``), so their state_dicts and the
    checkpoints do not change. Under a gradient penalty D is compiled only with penalty_grad
    finite-difference (the config refuses it otherwise): AOTAutograd's compiled backward cannot be
    differentiated again ("torch.compile with aot_autograd does not currently support double backward").
    """
    mode = config.compile
    if mode in ("generator", "forward"):
        G.compile(backend=COMPILE_BACKEND)
    if mode == "forward":
        if config.penalty_grad != "exact":
            keep_graphs_of_compiled_modules()
        D.compile(backend=COMPILE_BACKEND)
