"""Checkpoints: written atomically (temporary file, fsync, rename), last k kept, loaded safely.

Writing: the state goes to ``checkpoint_<step>.pt.tmp``, is flushed and fsync'ed, renamed over
the final name (atomic on POSIX) and the folder is fsync'ed (:func:`fastreg.atomic.atomic_write`), so a
process killed at any moment leaves either the previous set of checkpoints or the new one, never a torn
file under a final name. Then its manifest (SHA-256, run identity: :mod:`fastreg.train.manifest`) is
written the same way; a checkpoint without one is not taken. Stale temporary files of a killed writer
are removed by the next save and never listed.

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

import contextlib
import glob
import os
import re

import torch

from ..atomic import atomic_write
from ..torch_files import DamagedFileError, UnsafeFileError, load_verified

PATTERN = "checkpoint_{step:08d}.pt"
TEMPORARY_SUFFIX = ".tmp"


class CheckpointError(ValueError):
    """A checkpoint could not be loaded; the message names the file."""


class UnsafeCheckpointError(CheckpointError, UnsafeFileError):
    """The file holds pickled objects other than tensors and plain containers (it could run code)."""


class DamagedCheckpointError(CheckpointError, DamagedFileError):
    """The file is truncated, corrupted or not a checkpoint at all."""


def save_checkpoint(state: dict, run_dir: str, step: int, keep: int, identity: dict | None = None) -> str:
    """Write ``state`` as ``checkpoints/checkpoint_<step>.pt`` atomically, then its manifest (its SHA-256 and the
    run's ``identity``, :mod:`fastreg.train.manifest`); delete all but the newest ``keep`` intact ones.

    A full disk raises :class:`fastreg.atomic.DiskFullError` with no temporary file left; the previous
    checkpoints are untouched."""
    from .manifest import write_manifest

    folder = os.path.join(run_dir, "checkpoints")
    os.makedirs(folder, exist_ok=True)
    _remove_stale_temporaries(folder)
    path = os.path.join(folder, PATTERN.format(step=step))
    with atomic_write(path, "wb", temporary=path + TEMPORARY_SUFFIX) as f:
        torch.save(state, f)
    write_manifest(path, step, identity)
    _remove_old(list_checkpoints(run_dir), keep)
    return path


def _remove_old(paths: list[str], keep: int) -> None:
    """Delete the checkpoints (and manifests) older than the newest ``keep`` whose bytes match their manifest:
    a damaged one does not count, so it never outlives the good ones (it is deleted once older than them)."""
    from .manifest import check_bytes, manifest_path

    intact = 0
    for index in range(len(paths) - 1, -1, -1):
        if intact >= keep:
            for old in paths[:index + 1]:
                for name in (old, manifest_path(old)):
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(name)
            return
        try:
            check_bytes(paths[index])
        except DamagedCheckpointError:
            continue
        intact += 1


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
    stale_files = glob.glob(os.path.join(folder, "checkpoint_*.pt" + TEMPORARY_SUFFIX))
    stale_files += glob.glob(os.path.join(folder, ".checkpoint_*.manifest.json.*.tmp"))
    for stale in stale_files:
        try:
            os.remove(stale)
        except FileNotFoundError:
            pass
