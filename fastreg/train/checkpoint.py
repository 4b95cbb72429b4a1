"""Checkpoints: written atomically (temporary file, fsync, rename), last k kept, loaded safely.

Loading uses ``torch.load(weights_only=True)``, which refuses pickled code, so a
checkpoint from an untrusted source cannot execute anything.
"""

from __future__ import annotations

import glob
import os
import re

import torch

PATTERN = "checkpoint_{step:08d}.pt"


def save_checkpoint(state: dict, run_dir: str, step: int, keep: int) -> str:
    """Write ``state`` as ``checkpoints/checkpoint_<step>.pt`` atomically; delete all but the newest ``keep``."""
    folder = os.path.join(run_dir, "checkpoints")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, PATTERN.format(step=step))
    temporary = path + ".tmp"
    with open(temporary, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
    _fsync_directory(folder)
    for old in list_checkpoints(run_dir)[:-keep]:
        os.remove(old)
    return path


def list_checkpoints(run_dir: str) -> list[str]:
    """Complete checkpoints of a run, oldest first (temporary files are ignored)."""
    paths = glob.glob(os.path.join(run_dir, "checkpoints", "checkpoint_*.pt"))
    return sorted(p for p in paths if re.search(r"checkpoint_\d+\.pt$", p))


def load_checkpoint(path: str, map_location="cpu") -> dict:
    """Load a checkpoint without executing pickled code; raises ValueError naming the file otherwise."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # UnpicklingError and friends: report which file and why
        raise ValueError(f"checkpoint {path} could not be loaded safely (weights_only=True): {exc}") from exc


def latest_checkpoint(run_dir: str) -> str:
    paths = list_checkpoints(run_dir)
    if not paths:
        raise FileNotFoundError(f"no checkpoint in {os.path.join(run_dir, 'checkpoints')}")
    return paths[-1]


def _fsync_directory(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
