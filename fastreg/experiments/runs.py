"""Training runs of the experiments: configs at a scale, one run with its outcome, and the
``fastreg train`` command that re-runs it."""

from __future__ import annotations

import math
import shlex
import time
from dataclasses import dataclass, field, fields, replace
from typing import Callable

import torch

from .. import data
from ..train.config import TrainConfig
from ..train.metrics_log import read_metrics
from ..train.nonfinite import NonFiniteError
from ..train.trainer import Trainer
from .budget import Scale

IMAGE_BATCH = 64
# Roth et al.'s 3-D toy script (the authors' code): tanh MLPs, Adam 1e-3, batch 512, a 2-D latent, the minimax
# G loss (their toy GAN minimizes E log(1 - D(G(z)))), weights from a truncated normal of std 0.1, and the
# generator itself scored (no weight averaging).
TOY_BATCH = 512
TOY_Z_DIM = 2
TOY_VARIANT = "gan"
TOY_INIT = "truncated-normal"
TOY_DATA = "misspecified3d"
W1_SAMPLES = 500  # exact W1 solves an assignment problem: cubic in the sample count


def ema_decay(steps: int) -> float:
    """The generator EMA's decay for a run of ``steps``: the trainer's 0.999 for long runs, shorter for short
    ones (its time constant at most a tenth of the run), off below 20 steps. With 0.999 a 200-step run's EMA
    generator would still be mostly its initialisation."""
    return 0.0 if steps < 20 else min(0.999, 1 - 10 / steps)


def eval_interval(steps: int, points: int) -> int:
    """The evaluation interval giving ``points`` evaluations, the last at the final step: ceil(steps/points),
    so that no scheduled evaluation falls just before the final one (250 steps, 4 points: 63, 126, 189, 250;
    with steps // points = 62 the trainer also evaluated at 248)."""
    return max(1, -(-steps // max(1, points)))


def image_config(scale: Scale, data_name: str, out: str, seed: int, steps: int | None = None,
                 **overrides) -> TrainConfig:
    """A DCGAN-family run on ``data_name`` at the scale's resolution and width, evaluated ``eval_points`` times."""
    steps = steps or scale.image_steps
    config = TrainConfig(data=data_name, resolution=scale.resolution, width=scale.width, batch_size=IMAGE_BATCH,
                         steps=steps, seed=seed, out=out, log_every=max(1, steps // 50), sample_every=steps,
                         checkpoint_every=steps, keep_checkpoints=1,
                         eval_every=eval_interval(steps, scale.eval_points), eval_samples=scale.eval_samples,
                         eval_extractor=scale.extractor, ema=ema_decay(steps))
    return replace(config, **overrides).validate()


def toy_config(scale: Scale, out: str, seed: int, data_name: str = TOY_DATA, **overrides) -> TrainConfig:
    """Roth et al.'s toy script (see :data:`TOY_BATCH`): MLPs, Adam 1e-3 for D and G, batch 512, z 2, minimax G
    loss, truncated-normal init, no EMA (the raw generator is scored)."""
    steps = scale.toy_steps
    config = TrainConfig(data=data_name, model="mlp", variant=TOY_VARIANT, z_dim=TOY_Z_DIM, mlp_init=TOY_INIT,
                         batch_size=TOY_BATCH, lr_d=1e-3, lr_g=1e-3, steps=steps, seed=seed, out=out,
                         log_every=max(1, steps // 50), sample_every=steps, checkpoint_every=steps, keep_checkpoints=1,
                         eval_every=eval_interval(steps, scale.eval_points), eval_samples=scale.eval_samples, ema=0.0)
    return replace(config, **overrides).validate()


def command(config: TrainConfig) -> str:
    """``fastreg train ...`` with every field that differs from TrainConfig's default: re-runs this run."""
    default = TrainConfig()
    parts = ["fastreg", "train"]
    for f in fields(TrainConfig):
        value = getattr(config, f.name)
        if value == getattr(default, f.name):
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + f.name.replace("_", "-"))
        elif isinstance(value, tuple):
            parts += [flag, *(str(v) for v in value)]
        else:
            parts += [flag, str(value)]
    return " ".join(shlex.quote(p) for p in parts)


@dataclass
class Run:
    """One finished (or diverged) training run: its final evaluation and curve, and the trainer."""

    name: str
    config: TrainConfig
    seconds: float
    diverged: str | None                       # why training stopped early (non-finite value), else None
    evaluations: list[dict] = field(default_factory=list)
    trainer: Trainer | None = field(default=None, repr=False)

    @property
    def fid_key(self) -> str | None:
        return next((k for r in self.evaluations for k in r if k.startswith("fid/")), None)

    def final(self, key: str) -> float:
        """The last evaluation's ``key`` (FID: the ``fid/<extractor>`` key); inf when the run diverged."""
        if self.diverged:
            return math.inf
        key = self.fid_key if key == "fid" else key
        values = [r[key] for r in self.evaluations if key in r]
        return float(values[-1]) if values else math.nan

    def curve(self, key: str) -> list[tuple[int, float]]:
        key = self.fid_key if key == "fid" else key
        return [(r["step"], float(r[key])) for r in self.evaluations if key and key in r]

    def summary(self) -> dict:
        return {"name": self.name, "seed": self.config.seed, "seconds": round(self.seconds, 2),
                "diverged": self.diverged, "final_fid": self.final("fid"), "extractor": self.fid_key,
                "evaluations": self.evaluations, "command": command(self.config), "out": self.config.out}


def train_run(name: str, config: TrainConfig, keep_trainer: bool = False,
              before_train: Callable[[Trainer], object] | None = None) -> Run:
    """Train ``config`` (replacing an earlier run in its folder); a run stopped by a non-finite value is
    returned as diverged, not raised: an unstable run is a result of these experiments. ``before_train(trainer)``
    runs between building the trainer and training (vral: load the pretrained fixed generator)."""
    import shutil

    shutil.rmtree(config.out, ignore_errors=True)
    start = time.perf_counter()
    trainer, diverged = Trainer(config), None
    if before_train is not None:
        before_train(trainer)
    try:
        trainer.train()
    except NonFiniteError as exc:
        diverged = f"non-finite {exc.tensor} at step {exc.step}"
    seconds = time.perf_counter() - start
    evaluations = [r for r in read_metrics(config.out) if "eval_seconds" in r]
    # The trainer's config: D's normalization and Roth's forward mode as resolved, so reports state them.
    return Run(name, trainer.config, seconds, diverged, evaluations, trainer if keep_trainer else None)


def toy_quality(trainer: Trainer, samples: int, seed: int = 7) -> dict:
    """Modes covered, high-quality fraction and W1 of ``samples`` draws of the toy run's generator (its EMA
    generator if it has one; the toy runs have none)."""
    from ..metrics import mode_coverage, wasserstein_distance

    c = trainer.config
    mixture = data.get_dataset(c.data, seed=c.seed)
    z = torch.randn(samples, c.z_dim, generator=torch.Generator().manual_seed(seed))
    fake = trainer.sample(z.to(trainer.device, trainer.dtype)).float().cpu()
    coverage = mode_coverage(fake, mixture.modes, mixture.sigma)
    reference = data.get_dataset(c.data, seed=c.seed + 7919).sample(min(samples, W1_SAMPLES))
    finite = bool(torch.isfinite(fake).all())
    return {"modes_covered": coverage.modes_covered, "n_modes": coverage.n_modes,
            "high_quality": coverage.high_quality_fraction,
            "wasserstein_1": wasserstein_distance(fake[:len(reference)], reference) if finite else math.inf}


def sample_images(trainer: Trainer, n: int = 64, seed: int = 0) -> torch.Tensor:
    z = torch.randn(n, trainer.config.z_dim, generator=torch.Generator().manual_seed(seed))
    return trainer.sample(z.to(trainer.device, trainer.dtype)).float().cpu()
