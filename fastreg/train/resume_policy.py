"""What ``fastreg train --resume RUN --<field> VALUE`` may change, as one table the code reads.

Every config field is either

- ``CHANGEABLE``: the resumed run uses the new value from its next step on, and the value is recorded
  (``config.yaml``, later checkpoints) because it is in effect. How each is applied is the table's text;
- ``FIXED``: set when the run started. A different value is refused (ConfigError naming the field,
  exit status 2) before anything is written, because the checkpoint's networks, optimizer states or
  random streams were made with the old one, so the new value could only be recorded, not used.

A flag equal to the run's value (the value in force, for fields whose default depends on the variant,
e.g. ``--optimizer adam`` on an ``ns`` run) is no change and always accepted. A field added to
:class:`fastreg.train.config.TrainConfig` without an entry here is treated as fixed (and a test asks
for its entry). The README's "Resume" section is this table in words.
"""

from __future__ import annotations

import os
from dataclasses import fields

from .config import ConfigError, TrainConfig, from_dict, to_dict

CHANGEABLE = {
    "steps": "the new total of generator steps, above the checkpoint's step; the schedules that depend on the "
             "run's length (Roth's annealed gamma over the generator steps, the instance-noise decay) are "
             "stretched to the new total from the resumed step on",
    "lr_d": "set on D's optimizer (and on the lens's and VRAL's meta-discriminators', which follow lr_d)",
    "lr_g": "set on G's optimizer",
    "betas": "set on every Adam optimizer (refused when the run's optimizer is rmsprop, which has none)",
    "log_every": "metrics.jsonl interval", "sample_every": "sample-grid interval",
    "checkpoint_every": "checkpoint interval", "keep_checkpoints": "checkpoints kept from the next save on",
    "eval_every": "evaluation interval", "eval_samples": "samples per evaluation",
    "eval_extractor": "features of the evaluations from now on (FIDs of different extractors do not compare)",
    "on_nonfinite": "the policy for the next non-finite value", "nonfinite_check_every": "the guard's interval",
    "device": "where the resumed run trains (the states are loaded onto it)",
    "data_root": "where the run's dataset is read from (the same data: its sample shape is checked)",
    "compile": "torch.compile of the forwards (in place; the checkpoints do not change)",
    "cuda_graphs": "captured CUDA steps (the states are re-captured after the load)",
    "sync_batchnorm": "BatchNorm statistics over the global batch under torchrun",
}

_NETWORK = "the checkpoint's networks were built with it"
_RECIPE = "the run's training recipe; a different value would make it a different experiment (start a new run)"
FIXED = {
    "variant": "the losses, and the optimizer states trained under them", "reg": _RECIPE, "gamma": _RECIPE,
    "gamma_anneal": _RECIPE, "reg_every": _RECIPE, "reg_fraction": _RECIPE, "noise": _RECIPE, "noise_schedule": _RECIPE,
    "lens": _NETWORK, "lens_k": _RECIPE, "lens_width": _NETWORK, "vral_mu_real": _RECIPE, "vral_mu_fake": _RECIPE,
    "data": "the checkpoint's networks and data position belong to it", "resolution": _NETWORK, "model": _NETWORK,
    "width": _NETWORK, "d_norm": _NETWORK, "z_dim": _NETWORK,
    "penalty_grad": _RECIPE + " (the same penalty, a different estimate of its gradient)",
    "mlp_init": _NETWORK,
    "d_forward": _RECIPE + " (with batch norm in D only separate forwards are valid)",
    "batch_size": "the saved data position and random streams are per batch",
    "n_critic": _RECIPE + "; the D-step counter (lazy regularization) counts its steps",
    "optimizer": "the checkpoint's optimizer states are the run's optimizer's",
    "ema": "the EMA generator was averaged with it", "ema_warmup": "the EMA generator was averaged with it",
    "amp": "the saved GradScaler state and the numerics",
    "dtype": "the checkpoint's tensors are in it",
    "seed": "the random streams continue from the checkpoint's saved states, not from a seed",
    "out": "a resumed run continues in its own folder (to branch it, copy the folder and resume the copy)",
}

# Fields whose unset value means "the variant's default": compared by the value in force.
_RESOLVED = ("gamma", "d_norm", "optimizer", "lr_d", "lr_g", "betas", "n_critic")


def is_changeable(name: str) -> bool:
    return name in CHANGEABLE


def resumed_config(saved: dict, run_dir: str, step: int, overrides: dict | None = None) -> TrainConfig:
    """The config of the resumed run: the checkpoint's (``saved``), ``out`` = ``run_dir``, ``overrides`` applied.

    Raises ConfigError naming the first fixed field that ``overrides`` changes, an invalid value, or
    a ``steps`` that leaves nothing to train (the run is at ``step``).
    """
    old = from_dict(saved)
    overrides = dict(overrides or {})
    if "out" in overrides and os.path.realpath(overrides["out"]) != os.path.realpath(run_dir):
        raise ConfigError(f"out: --resume continues the run in its own folder {run_dir}; --out {overrides['out']} "
                          f"would have to copy it. To branch the run, copy {run_dir} to {overrides['out']} and "
                          f"resume the copy")
    overrides.pop("out", None)
    new = from_dict({**to_dict(old), **overrides, "out": run_dir}).validate()
    for f in fields(TrainConfig):
        name = f.name
        if name == "out" or _in_force(old, name) == _in_force(new, name):
            continue
        if not is_changeable(name):
            reason = FIXED.get(name, "not classified in fastreg.train.resume_policy, so kept fixed")
            raise ConfigError(f"{name}: fixed by the run in {run_dir} (it has {_in_force(old, name)!r}, the resume "
                              f"asks for {_in_force(new, name)!r}): {reason}. A resume can change: "
                              f"{', '.join(CHANGEABLE)}")
    if "betas" in overrides and _in_force(old, "betas") != _in_force(new, "betas") \
            and new.resolved("optimizer") != "adam":
        raise ConfigError(f"betas: the run's optimizer is {new.resolved('optimizer')}, which has no betas")
    if new.steps <= step:
        asked = "asks for" if "steps" in overrides else "has"
        raise ConfigError(f"steps: the run in {run_dir} is at step {step} already and the resume {asked} "
                          f"--steps {new.steps}, so there is nothing to train; give --steps above {step} to "
                          f"continue it")
    return new


def _in_force(config: TrainConfig, name: str):
    value = config.resolved(name) if name in _RESOLVED else getattr(config, name)
    return tuple(value) if isinstance(value, list) else value
