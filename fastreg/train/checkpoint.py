"""Checkpoints: written atomically (temporary file, fsync, rename), last k kept, loaded safely.

Writing: the state goes to ``checkpoint_<step>.pt.tmp``, is flushed and fsync'ed, renamed over
the final name (atomic on POSIX) and the folder is fsync'ed, so a process killed at any moment
leaves either the previous set of checkpoints or the new one, never a torn file under a final
name. Stale temporary files of a killed writer are removed by the next save and never listed.

Loading (:func:`fastreg.torch_files.load_verified`) first checks the zip archive: its directory and
the CRC-32 of every member, so a flipped byte anywhere in the tensor data or the pickle is caught
(``torch.load`` alone does not check). An intact archive is read with ``torch.load(weights_only=True)``,
which unpickles only tensors, numbers, strings and plain containers. Any damage, whatever its symptom,
raises :class:`DamagedCheckpointError` (a resume warns and falls back to the checkpoint before it);
only an intact file whose pickle names code (the way a malicious file runs it) is refused with
:class:`UnsafeCheckpointError`, before anything in it is executed. What a training checkpoint must
hold (keys, shapes, random states) is checked by :mod:`fastreg.train.state_check`.
"""

from __future__ import annotations

import glob
import os
import re

import torch

from ..torch_files import DamagedFileError, UnsafeFileError, load_verified

PATTERN = "checkpoint_{step:08d}.pt"
TEMPORARY_SUFFIX = ".tmp"


class CheckpointError(ValueError):
    """A checkpoint could not be loaded; the message names the file."""


class UnsafeCheckpointError(CheckpointError, UnsafeFileError):
    """The file holds pickled objects other than tensors and plain containers (it could run code)."""


class DamagedCheckpointError(CheckpointError, DamagedFileError):
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

    Raises :class:`DamagedCheckpointError` when the archive fails its CRC checks, does not unpickle or
    holds no dict, :class:`UnsafeCheckpointError` when an intact file's pickle names code, and
    FileNotFoundError when it does not exist; each message names the file.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = load_verified(path, map_location=map_location)
    except UnsafeFileError as exc:
        raise UnsafeCheckpointError(f"checkpoint {exc}") from None
    except DamagedFileError as exc:
        raise DamagedCheckpointError(f"checkpoint {exc}") from None
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
