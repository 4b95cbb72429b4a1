"""A run's state: what a checkpoint holds and how it is restored, and the global random state.

:func:`training_state` gathers everything a resume needs (networks, optimizers, GradScaler, counters,
the data stream, the non-finite guard and the random states); :func:`restore_training_state` puts it
back into a :class:`~fastreg.train.trainer.Trainer`. The random states are python's, numpy's, torch's
CPU and CUDA generators (:func:`rng_state`); :func:`untouched_rng` leaves them as they were, for readers
of a run (:func:`fastreg.train.runs.open_run`) that build networks without moving a caller's stream.
"""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

from . import cuda_graphs, distributed
from .config import ConfigError, to_dict


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Python's, numpy's and torch's (CPU, every CUDA device's) random states, as tensors and plain values."""
    version, mt_state, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "python": {"version": version, "state": list(mt_state), "gauss": gauss},
    }


def set_rng_state(state: dict) -> None:
    """Restore a :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


@contextlib.contextmanager
def untouched_rng():
    """Whatever the block draws, the global random states afterwards are the ones before it."""
    saved = rng_state()
    try:
        yield
    finally:
        set_rng_state(saved)


def check_fits(state: dict, shape: tuple, data: str) -> None:
    """ConfigError when the checkpoint's networks take samples of another shape than ``data`` gives."""
    saved = state.get("sample_shape")
    if saved is not None and tuple(saved) != tuple(shape):
        what = "channels" if len(saved) == 3 == len(shape) and saved[0] != shape[0] else "shape"
        raise ConfigError(f"data: the checkpoint's networks take samples of shape {tuple(saved)}, but data "
                          f"{data!r} gives {tuple(shape)} (different {what}); resume with "
                          f"the run's data, or start a new run")


def load_parts(parts: dict, state: dict) -> None:
    """``part.load_state_dict(state[name])`` for each of ``parts``; ConfigError naming the part that does not fit."""
    for name, part in parts.items():
        try:
            part.load_state_dict(state[name])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"resume: the checkpoint's {name} does not fit the config "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0]})") from None


def training_state(trainer) -> dict:
    """Everything a resume needs. The schedules are functions of (config, step, d_steps); the
    random states are this rank's (``rng``) and, under torchrun, every rank's (``rng_ranks``).
    A collective under torchrun: every rank must call it."""
    rng = rng_state()
    steps = trainer.steps
    state = {
        "step": steps.step, "d_steps": steps.d_steps, "config": to_dict(trainer.config),
        **{name: part.state_dict() for name, part in trainer.modules().items()},
        "data": trainer.real.state_dict(), "rng": rng,
        "nonfinite": trainer.guard.state_dict(), "sample_shape": list(trainer.shape), "world_size": trainer.world.size,
    }
    if trainer.world.distributed:
        state["rng_ranks"] = trainer.world.gather(rng)
    return state


def restore_training_state(trainer, state: dict) -> None:
    """Restore a checkpoint into ``trainer``; ConfigError when it does not fit its config's data or networks."""
    check_fits(state, trainer.shape, trainer.config.data)
    parts = trainer.modules()
    load_parts(parts, state)
    steps = trainer.steps
    steps.step, steps.d_steps = int(state["step"]), int(state["d_steps"])
    trainer.real.load_state_dict(state["data"])
    if "nonfinite" in state:
        trainer.guard.load_state_dict(state["nonfinite"])
    _restore_rng(state, trainer.world, trainer.config.seed + steps.step)
    apply_config_learning_rates(trainer.config, parts)
    for part in parts.values():  # the saved optimizers may have been (not) capturable
        if isinstance(part, torch.optim.Optimizer):
            cuda_graphs.set_capturable(part, trainer.graphs is not None)
    if trainer.graphs is not None:  # the captured steps point at the replaced optimizer states: capture anew
        trainer.graphs = cuda_graphs.CudaGraphSteps(steps)


def apply_config_learning_rates(config, parts: dict) -> None:
    """The config's learning rates and Adam betas win over the ones saved with the optimizers, so a
    resume can change them (``--resume RUN --lr-d 1e-4 --betas 0 0.9``); unchanged, they are the same."""
    rates = {"opt_g": config.resolved("lr_g"), "opt_d": config.resolved("lr_d"), "opt_lens": config.resolved("lr_d"),
             "opt_meta": config.resolved("lr_d")}
    for name, optimizer in parts.items():
        if name in rates:
            for group in optimizer.param_groups:
                group["lr"] = rates[name]
                if "betas" in group:
                    group["betas"] = tuple(config.resolved("betas"))


def _restore_rng(state: dict, world, fresh_seed: int) -> None:
    """This rank's saved random state; a resume on another number of processes gives ranks > 0
    fresh streams (rank 0 continues its own), seeded from ``fresh_seed`` (seed + step)."""
    ranks = state.get("rng_ranks")
    if ranks is not None and len(ranks) == world.size:
        set_rng_state(ranks[world.rank])
    elif world.rank == 0:
        set_rng_state(state["rng"])
    else:
        seed_everything(distributed.rank_seed(fresh_seed, world.rank))
