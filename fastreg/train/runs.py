"""Opening a saved run without training it: :func:`open_run`, and finding a run's newest good checkpoint.

Every reader of a run (``fastreg fid``, ``fastreg diagnose``, :mod:`fastreg.metrics.sources`, the
diagnostics reports) opens it here: the config, G, D, the EMA generator (and the lens) with the
checkpoint's weights, the dataset and the step. Nothing else is built (no optimizers, GradScaler,
data stream or ``torch.compile``) and the global random state is left as it was.
"""

from __future__ import annotations

import copy
import os
import warnings
from dataclasses import dataclass, replace

import torch

from .. import models
from . import build
from .checkpoint import DamagedCheckpointError, list_checkpoints, load_checkpoint
from .config import TrainConfig, from_dict
from .outputs import sample
from .state import check_fits, load_parts, untouched_rng


@dataclass
class Run:
    """A saved run as of one checkpoint; the networks are in training mode (the EMA generator in eval mode)."""

    path: str                    # the run folder
    checkpoint: str              # the checkpoint read
    config: TrainConfig          # the checkpoint's config (``out`` = ``path``, ``device`` as opened)
    G: torch.nn.Module
    D: torch.nn.Module
    G_ema: torch.nn.Module | None
    lens: torch.nn.Module | None
    dataset: object
    shape: tuple                 # one real sample's shape
    step: int                    # generator steps done
    device: torch.device
    dtype: torch.dtype

    def sample(self, z: torch.Tensor) -> torch.Tensor:
        """Samples of the EMA generator (the plain one when EMA is off) in eval mode, without gradients."""
        return sample(self.G_ema if self.G_ema is not None else self.G, z.to(self.device, self.dtype))


def open_run(run_dir: str, device: str | None = None, checkpoint: str | None = None) -> Run:
    """The run in ``run_dir`` as of ``checkpoint`` (default: its newest good one, :func:`newest_good_checkpoint`)
    on ``device`` (default: the run's). ConfigError when the checkpoint does not fit its own config."""
    path, state = ((checkpoint, training_state_of(checkpoint, run_dir)) if checkpoint
                   else newest_good_checkpoint(run_dir))
    config = from_dict(state["config"])
    config = replace(config, out=run_dir, device=device or config.device).validate().with_resolved_architecture()
    where = build.device_of(config)
    dtype = torch.float64 if config.dtype == "float64" else torch.float32
    with untouched_rng():  # network initialisation draws from the global generators
        dataset = build.dataset_of(config)
        shape = build.sample_shape(dataset)
        check_fits(state, shape, config.data)
        G, D = (m.to(where, dtype) for m in build.networks(config, shape))
        parts = {"G": G, "D": D}
        if config.ema > 0:
            parts["G_ema"] = copy.deepcopy(G).requires_grad_(False).eval()
        if config.lens:
            parts["lens"] = models.Lens(channels=shape[0], width=config.lens_width).to(where, dtype)
        load_parts(parts, state)
    return Run(run_dir, path, config, G, D, parts.get("G_ema"), parts.get("lens"), dataset, shape,
               int(state["step"]), where, dtype)


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
            return path, training_state_of(path, run_dir)
        except DamagedCheckpointError as exc:
            warnings.warn(f"{exc}; trying the one before it", stacklevel=3)
    try:
        return paths[0], training_state_of(paths[0], run_dir)
    except DamagedCheckpointError as exc:
        if len(paths) == 1:
            raise
        raise DamagedCheckpointError(f"{exc}; it was the oldest of {len(paths)}: no checkpoint of {run_dir} "
                                     f"is intact") from None


def training_state_of(path: str, run_dir: str | None = None) -> dict:
    """The training checkpoint at ``path``, checked to be complete (:mod:`fastreg.train.state_check`) and to be
    exactly what ``run_dir`` (default: the folder above its ``checkpoints/``) wrote (:mod:`fastreg.train.manifest`:
    DamagedCheckpointError, or its ForeignCheckpointError for another run's)."""
    from .manifest import verify
    from .state_check import check_training_state

    state = check_training_state(load_checkpoint(path), path)
    verify(path, state, run_dir)
    return state
