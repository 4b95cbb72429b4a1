"""What a training run writes besides checkpoints: log records, sample images, evaluations, the
non-finite report and the closing summary line; and the EMA generator's samples (:func:`sample`)."""

from __future__ import annotations

import json
import math
import os

import torch

from ..atomic import write_text
from ..metrics.evaluation import describe
from .checkpoint import list_checkpoints
from .config import to_dict
from .metrics_log import MetricsLog, jsonable
from .nonfinite import NonFiniteError
from .samples import save_sample_grid, save_scatter
from .steps import peak

SAMPLE_COUNT = 64


def sample(G: torch.nn.Module, z: torch.Tensor) -> torch.Tensor:
    """``G(z)`` in eval mode without gradients; G's mode is left as it was."""
    was_training = G.training
    G.eval()
    with torch.no_grad():
        out = G(z)
    G.train(was_training)
    return out


def save_samples(trainer) -> str:
    """The fixed latents' samples at this step: ``samples/step_NNNNNN.png`` (a grid, or a scatter for toy data)."""
    path = os.path.join(trainer.config.out, "samples", f"step_{trainer.step:06d}.png")
    samples = trainer.sample()
    if samples.dim() == 2:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        save_scatter(samples.float().cpu(), path, reference=_reference_points(trainer.real.dataset))
    else:
        save_sample_grid(samples, path)
    return path


def log_record(trainer, means: dict, wall_time: float) -> dict:
    """One metrics.jsonl record: the logged means, the schedules' values, the counters."""
    steps, step = trainer.steps, trainer.step
    if not steps.regularizer.has_penalty:  # no penalty computed: no "penalty" field (not a NaN as the string "nan")
        means = {k: v for k, v in means.items() if k != "penalty"}
    return {"step": step, **means, "gamma": steps.gamma(step) if steps.regularizer.has_penalty else 0.0,
            "sigma": steps.sigma(step), "lens_lambda": steps.lens_lambda(step) if steps.lens else 0.0,
            "d_steps": steps.d_steps, "wall_time": wall_time, "nonfinite_skipped": trainer.guard.skipped,
            "world_size": trainer.world.size}


def evaluate_if_due(trainer, log: MetricsLog) -> dict | None:
    """Every eval_every steps and at the last: FID/KID (or toy metrics) of the EMA generator into the log
    (metrics.jsonl and TensorBoard); returns the record when it evaluated.

    The evaluator draws from its own generators, so evaluating does not change the run's trajectory.
    """
    from tqdm.auto import tqdm

    c, step = trainer.config, trainer.step
    if c.eval_every and (step % c.eval_every == 0 or step == c.steps):
        record = {"step": step, **trainer.evaluator(lambda z: trainer.sample(z.to(trainer.device, trainer.dtype)))}
        log.write(record)
        tqdm.write(f"{os.path.basename(c.out)} step {step}: {describe(record)}")
        return record
    return None


def summary_line(trainer, first_step: int, seconds: float, record: dict) -> str:
    """The one line a finished training prints: steps, time, final losses, where the outputs are."""
    c, step = trainer.config, trainer.step
    newest = list_checkpoints(c.out)
    return (f"fastreg: trained {c.out} from step {first_step} to {step} in {seconds:.0f} s "
            f"({(step - first_step) / max(seconds, 1e-9):.1f} steps/s); last logged d_loss "
            f"{record['d_loss']:.4g}, g_loss {record['g_loss']:.4g}; samples in {os.path.join(c.out, 'samples')}, "
            f"checkpoint {newest[-1] if newest else 'none'}")


def write_nonfinite_report(trainer, error: NonFiniteError) -> str:
    """``<out>/nonfinite_step_<step>.json``: what was non-finite, every watched value of that update,
    the schedules, the parameters' largest magnitudes and the last good checkpoint."""
    c, steps = trainer.config, trainer.steps
    checkpoints = list_checkpoints(c.out)
    error.checkpoint = checkpoints[-1] if checkpoints else None
    parts = trainer.modules()
    report = {
        "tensor": error.tensor, "step": error.step, "update": error.update,
        "detected_at_update": error.detected_at, "policy": c.on_nonfinite,
        "non_finite": [name for name, value in error.values.items() if not math.isfinite(value)],
        "values": error.values, "d_steps": steps.d_steps,
        "learning_rates": {name: [g["lr"] for g in opt.param_groups] for name, opt in parts.items()
                           if isinstance(opt, torch.optim.Optimizer)},
        "gamma": steps.gamma(steps.step) if steps.regularizer.has_penalty else 0.0, "sigma": steps.sigma(steps.step),
        "parameter_peaks": {name: _module_peaks(part) for name, part in parts.items()
                            if isinstance(part, torch.nn.Module)},
        "last_good_checkpoint": error.checkpoint, "world_size": trainer.world.size, "config": to_dict(c),
    }
    os.makedirs(c.out, exist_ok=True)
    error.diagnostics = os.path.join(c.out, f"nonfinite_step_{error.step:06d}.json")
    write_text(error.diagnostics, json.dumps(jsonable(report), indent=1))
    return error.diagnostics


def evaluation_postfix(record: dict) -> dict:
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


class Window:
    """Running sums of logged tensors on the device; one host read per log line."""

    def __init__(self):
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


def _module_peaks(module: torch.nn.Module) -> dict:
    """Largest |entry| of each parameter (NaN or inf when it is non-finite)."""
    return {name: peak(p).item() for name, p in module.named_parameters()}


def _reference_points(dataset, n: int = 1000) -> torch.Tensor | None:
    """n points of a toy mixture for a scatter plot, drawn without moving the training stream."""
    if not hasattr(dataset, "sample"):
        return None
    state = dataset.state_dict()
    points = dataset.sample(n)
    dataset.load_state_dict(state)
    return points
