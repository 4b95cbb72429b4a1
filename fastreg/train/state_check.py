"""What a fastreg training checkpoint must hold, checked before a resume (or fid, diagnose) uses it.

An archive that passes its CRC checks (:mod:`fastreg.torch_files`) can still be unusable: written by
a different version, edited by hand, or a dict that is no training state at all. Used as it is, such
a file fails deep inside the resume (a bare ``KeyError``, an ``OverflowError`` in ``random.setstate``)
or, worse, loads. :func:`check_training_state` raises :class:`DamagedCheckpointError` naming the file
and the first problem, so that the caller can fall back to the checkpoint before it:

- ``step`` (the one in the file name), ``d_steps``: non-negative integers; ``config``: a dict that
  :func:`fastreg.train.config.from_dict` accepts; ``sample_shape``: the real samples' shape;
- the networks (``G``, ``D``, and ``G_ema``, ``lens``, ``meta_fake``, ``meta_real`` where the config
  has them): exactly the keys and tensor shapes of the networks that config builds for that sample
  shape (built on the meta device: no memory, no random numbers drawn);
- the optimizers (``opt_g``, ``opt_d``, ``opt_lens``, ``opt_meta``): one state per parameter, holding
  the config's optimizer's buffers (Adam's ``exp_avg``/``exp_avg_sq``, RMSprop's ``square_avg``) in
  the parameter's shape;
- ``rng`` (and every rank's ``rng_ranks``), ``data``: states that torch, numpy and python accept,
  tried on fresh generators (the global ones are not touched).
"""

from __future__ import annotations

import os
import random
import re

import numpy as np
import torch

from .checkpoint import DamagedCheckpointError
from .config import ConfigError, from_dict

OPTIMIZER_BUFFERS = {"adam": ("exp_avg", "exp_avg_sq"), "rmsprop": ("square_avg",)}


class _Problem(Exception):
    """One thing wrong with the state; turned into a DamagedCheckpointError naming the file."""


def check_training_state(state, path: str) -> dict:
    """``state`` when it is a complete training state of the run (module doc); else DamagedCheckpointError."""
    try:
        _check(state, path)
    except _Problem as problem:
        raise DamagedCheckpointError(f"checkpoint {path} is damaged: {problem}") from None
    return state


def _check(state, path: str) -> None:
    if not isinstance(state, dict):
        raise _Problem(f"it holds a {type(state).__name__}, not a state dict")
    missing = [key for key in ("step", "d_steps", "config", "G", "D", "opt_g", "opt_d", "data", "rng", "scaler")
               if key not in state]
    if missing:
        raise _Problem(f"it is not a fastreg training checkpoint (no {', '.join(missing)})")
    for key in ("step", "d_steps"):
        _require(_is_count(state[key]), f"{key} is {state[key]!r}, not a non-negative integer")
    named = re.search(r"checkpoint_(\d+)\.pt$", os.path.basename(path))
    if named is not None and int(named.group(1)) != state["step"]:
        raise _Problem(f"it holds step {state['step']}, its name says {int(named.group(1))}")
    _require(isinstance(state["config"], dict), "config is not a dict")
    try:
        config = from_dict(state["config"])
    except (ConfigError, TypeError, ValueError) as exc:
        raise _Problem(f"its config does not parse ({exc})") from None
    shape = state.get("sample_shape")
    _require(isinstance(shape, list) and shape and all(_is_count(n) and n > 0 for n in shape),
             f"sample_shape is {shape!r}")
    networks = _networks(config, tuple(shape))
    for name, module in networks.items():
        _require(name in state, f"it has no {name}, which the run's config has")
        _check_module(name, state[name], module)
    for name in ("G_ema", "lens", "meta_fake", "meta_real"):
        _require(name in networks or name not in state, f"it has a {name}, which the run's config has not")
    parameters = {"opt_g": ["G"], "opt_d": ["D"], "opt_lens": ["lens"], "opt_meta": ["meta_fake", "meta_real"]}
    kind = config.resolved("optimizer")
    for name, owners in parameters.items():
        if all(owner in networks for owner in owners):
            _require(name in state, f"it has no {name}")
            shapes = [tuple(p.shape) for owner in owners for p in networks[owner].parameters()]
            _check_optimizer(name, state[name], shapes, OPTIMIZER_BUFFERS[kind])
    _require(isinstance(state["scaler"], dict), "scaler is not a dict")
    for rng in [state["rng"], *(state.get("rng_ranks") or [])]:
        _check_rng(rng)
    _check_data(state["data"])
    guard = state.get("nonfinite", {"skipped": 0, "updates": 0})
    _require(isinstance(guard, dict) and all(_is_count(guard.get(k)) for k in ("skipped", "updates")),
             "nonfinite is not a pair of counts")


def _networks(config, shape: tuple) -> dict:
    """The run's networks as the Trainer builds them, on the meta device (shapes only)."""
    from .. import models
    from . import build

    with torch.device("meta"), torch.random.fork_rng(devices=[]):
        try:
            G, D = build.networks(config, shape)
        except (ConfigError, ValueError) as exc:
            raise _Problem(f"its config builds no networks for samples of shape {shape} ({exc})") from None
        out = {"G": G, "D": D}
        if config.ema > 0:
            out["G_ema"] = G
        if config.lens:
            out["lens"] = models.Lens(channels=shape[0], width=config.lens_width)
        if config.variant == "vral":
            out["meta_fake"], out["meta_real"] = models.make_meta_discriminators()
    return out


def _check_module(name: str, saved, module: torch.nn.Module) -> None:
    _require(isinstance(saved, dict), f"{name} is not a state dict")
    expected = {key: tuple(value.shape) for key, value in module.state_dict().items()}
    missing, unexpected = sorted(set(expected) - set(saved)), sorted(set(saved) - set(expected))
    _require(not missing and not unexpected,
             f"{name} does not have the run's network's keys (missing {missing[:3]}, unexpected {unexpected[:3]})")
    for key, shape in expected.items():
        value = saved[key]
        _require(isinstance(value, torch.Tensor) and tuple(value.shape) == shape,
                 f"{name}.{key} has shape {tuple(getattr(value, 'shape', ()))}, the network's is {shape}")


def _check_optimizer(name: str, saved, shapes: list, buffers: tuple) -> None:
    _require(isinstance(saved, dict) and isinstance(saved.get("state"), dict)
             and isinstance(saved.get("param_groups"), list), f"{name} is not an optimizer state dict")
    indices = [i for group in saved["param_groups"] if isinstance(group, dict) for i in group.get("params", [])]
    _require(len(indices) == len(shapes), f"{name} holds {len(indices)} parameters, the networks {len(shapes)}")
    for index, shape in zip(indices, shapes):
        entry = saved["state"].get(index)
        if entry is None:  # a parameter that has not been stepped yet
            continue
        for buffer in buffers:
            value = entry.get(buffer) if isinstance(entry, dict) else None
            _require(isinstance(value, torch.Tensor) and tuple(value.shape) == shape,
                     f"{name}'s state of parameter {index} has no {buffer} of shape {shape}")


def _check_rng(rng) -> None:
    _require(isinstance(rng, dict) and {"torch", "numpy", "python"} <= set(rng), "rng is incomplete")
    try:
        torch.Generator().set_state(rng["torch"])
        n = rng["numpy"]
        keys = n["keys"].numpy()
        _require(keys.shape == (624,) and keys.min() >= 0 and keys.max() < 2**32, "rng.numpy's keys are out of range")
        np.random.RandomState().set_state(("MT19937", keys.astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
        p = rng["python"]
        words = p["state"]
        _require(len(words) == 625 and all(isinstance(w, int) and 0 <= w < 2**32 for w in words),
                 "rng.python's state is not 625 words of 32 bits")
        random.Random().setstate((p["version"], tuple(words), p["gauss"]))
        for state in rng.get("cuda", []):
            _require(isinstance(state, torch.Tensor) and state.dtype == torch.uint8, "rng.cuda is not a byte tensor")
    except _Problem:
        raise
    except Exception as exc:  # TypeError, ValueError, OverflowError, KeyError, RuntimeError...
        raise _Problem(f"its random state does not load ({type(exc).__name__}: {exc})") from None


def _check_data(data) -> None:
    _require(isinstance(data, dict), "data is not a dict")
    try:
        if "toy" in data:
            torch.Generator().set_state(data["toy"]["rng"])
            return
        torch.Generator().set_state(data["epoch_state"])
    except Exception as exc:
        raise _Problem(f"its data position does not load ({type(exc).__name__}: {exc})") from None
    _require(_is_count(data.get("position")), f"data.position is {data.get('position')!r}")


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _require(condition: bool, problem: str) -> None:
    if not condition:
        raise _Problem(problem)
