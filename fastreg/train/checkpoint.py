"""Checkpoints: written atomically (temporary file, fsync, rename), last k kept, loaded safely.

Writing: the state goes to ``checkpoint_<step>.pt.tmp``, is flushed and fsync'ed, renamed over
the final name (atomic on POSIX) and the folder is fsync'ed, so a process killed at any moment
leaves either the previous set of checkpoints or the new one, never a torn file under a final
name. Stale temporary files of a killed writer are removed by the next save and never listed.

Loading uses ``torch.load(weights_only=True)``, which unpickles only tensors, numbers, strings
and plain containers: a checkpoint carrying any other pickled object (the way a malicious file
runs code) is refused with :class:`UnsafeCheckpointError`, before anything in it is executed.
"""

from __future__ import annotations

import glob
import os
import pickle
import re

import torch

PATTERN = "checkpoint_{step:08d}.pt"
TEMPORARY_SUFFIX = ".tmp"


class CheckpointError(ValueError):
    """A checkpoint could not be loaded; the message names the file."""


class UnsafeCheckpointError(CheckpointError):
    """The file holds pickled objects other than tensors and plain containers (it could run code)."""


class DamagedCheckpointError(CheckpointError):
    """The file is truncated, corrupted or not a checkpoint at all."""


def save_checkpoint(state: dict, run_dir: str, step: int, keep: int) -> str:
    """Write ``state`` as ``checkpoints/checkpoint_<step>.pt`` atomically; delete all but the newest ``keep``."""
    folder = os.path.join(run_dir, "checkpoints")
    os.makedirs(folder, exist_ok=True)
    _remove_stale_temporaries(folder)
    path = os.path.join(folder, PATTERN.format(step=step))
    temporary = path + TEMPORARY_SUFFIX
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
    """Load a checkpoint without executing pickled code.

    Raises :class:`UnsafeCheckpointError` when the file holds pickled objects other than tensors
    and plain containers, :class:`DamagedCheckpointError` when it is unreadable or not a dict, and
    FileNotFoundError when it does not exist; each message names the file.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).strip().splitlines()
        detail = next((line for line in reason if "Unsupported global" in line or "Unpickler error" in line),
                      reason[0] if reason else "")
        raise UnsafeCheckpointError(
            f"checkpoint {path} refused: it holds pickled objects other than tensors and plain containers, "
            f"which could run arbitrary code when loaded; fastreg loads with torch.load(weights_only=True) and "
            f"never unpickles them ({detail.strip()})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise DamagedCheckpointError(f"checkpoint {path} is damaged or not a checkpoint: {exc}") from None
    if not isinstance(state, dict):
        raise DamagedCheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a state dict")
    return state


def latest_checkpoint(run_dir: str) -> str:
    paths = list_checkpoints(run_dir)
    if not paths:
        raise FileNotFoundError(f"no checkpoint in {os.path.join(run_dir, 'checkpoints')}")
    return paths[-1]


def _remove_stale_temporaries(folder: str) -> None:
    """Temporary files left by a writer that was killed mid-save (only one process writes a run)."""
    for stale in glob.glob(os.path.join(folder, "checkpoint_*.pt" + TEMPORARY_SUFFIX)):
        try:
            os.remove(stale)
        except FileNotFoundError:
            pass


def _fsync_directory(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
