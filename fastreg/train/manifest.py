"""A checkpoint proves what it is: a manifest beside it (its SHA-256, its run's identity) checked on load.

The zip CRCs :mod:`fastreg.torch_files` checks catch accidental damage of a member's bytes, but not all of
it (a flipped attribute bit in the central directory passes them), and nothing in a checkpoint says
which run wrote it: a ``checkpoint_00000040.pt`` copied from another run (another variant, regularizer
or width) was resumed as the run's own, and ``config.yaml`` then recorded the other run's fields.

So every run folder has an identity, ``run_identity.json``, written when its first training starts::

    {"run_id": <uuid4 hex>, "fixed_config_sha256": <SHA-256 of the run's fixed config fields>}

(the fixed fields are :data:`fastreg.train.resume_policy.FIXED`, by the value in force, in canonical JSON),
and each checkpoint ``checkpoint_N.pt`` has a manifest ``checkpoint_N.manifest.json``::

    {"file": "checkpoint_N.pt", "step": N, "size": <bytes>, "sha256": <SHA-256 of the file>,
     "run_id": ..., "fixed_config_sha256": ...}

written (atomically) after the checkpoint itself. :func:`verify` accepts a checkpoint only when its
manifest exists, its size and SHA-256 are the file's, its run id and fixed-config hash are the run
folder's identity, and the config inside the checkpoint hashes to the same fixed-config hash. Anything
else is :class:`DamagedCheckpointError` (no manifest, a different hash: the bytes are not what was
written) or :class:`ForeignCheckpointError` (intact, but another run's), named as such; a resume skips
it and falls back to the checkpoint before it. A branch of a run (its folder copied, then resumed) keeps
the identity, so its checkpoints stay its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid

from ..atomic import write_text
from ..torch_files import file_sha256
from .checkpoint import DamagedCheckpointError
from .config import TrainConfig, from_dict

IDENTITY_NAME = "run_identity.json"
MANIFEST_SUFFIX = ".manifest.json"


class ForeignCheckpointError(DamagedCheckpointError):
    """An intact checkpoint that another run wrote (another run id or other fixed config fields)."""


def manifest_path(checkpoint: str) -> str:
    return re.sub(r"\.pt$", "", checkpoint) + MANIFEST_SUFFIX


def fixed_config_sha256(config: TrainConfig) -> str:
    """SHA-256 of the fields a resume cannot change (:data:`fastreg.train.resume_policy.FIXED`, but ``out``)."""
    from .resume_policy import FIXED, _in_force as in_force

    values = {name: in_force(config, name) for name in sorted(FIXED) if name != "out"}
    text = json.dumps(values, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()


def read_identity(run_dir: str) -> dict | None:
    """The run folder's identity, or None when it has none (a folder no training has started in)."""
    path = os.path.join(run_dir, IDENTITY_NAME)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            identity = json.load(f)
    except (OSError, ValueError) as exc:
        raise DamagedCheckpointError(f"{path} is damaged: {type(exc).__name__}: {exc}; without it no checkpoint "
                                     f"of {run_dir} can be shown to be the run's own") from None
    if not (isinstance(identity, dict) and isinstance(identity.get("run_id"), str)
            and isinstance(identity.get("fixed_config_sha256"), str)):
        raise DamagedCheckpointError(f"{path} is damaged: it does not hold a run_id and a fixed_config_sha256")
    return identity


def ensure_identity(run_dir: str, config: TrainConfig, new: bool = False) -> dict:
    """The identity of ``run_dir``, written for a new run (``new``, or a folder without one: a fresh run id and
    ``config``'s fixed-field hash)."""
    identity = None if new else read_identity(run_dir)
    if identity is None:
        identity = {"run_id": uuid.uuid4().hex, "fixed_config_sha256": fixed_config_sha256(config)}
        write_text(os.path.join(run_dir, IDENTITY_NAME), json.dumps(identity, indent=1) + "\n")
    return identity


def write_manifest(checkpoint: str, step: int, identity: dict | None) -> str:
    """Write ``checkpoint``'s manifest (after the checkpoint itself is in place); returns its path."""
    manifest = {"file": os.path.basename(checkpoint), "step": step, "size": os.path.getsize(checkpoint),
                "sha256": file_sha256(checkpoint), **(identity or {})}
    path = manifest_path(checkpoint)
    write_text(path, json.dumps(manifest, indent=1) + "\n")
    return path


def check_bytes(checkpoint: str) -> dict:
    """``checkpoint``'s manifest when the file's size and SHA-256 are the manifest's; else DamagedCheckpointError."""
    path = manifest_path(checkpoint)
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise DamagedCheckpointError(f"checkpoint {checkpoint} is damaged or foreign: it has no manifest "
                                     f"{os.path.basename(path)} (fastreg writes one with every checkpoint; a save "
                                     f"that was interrupted, or a file copied in from elsewhere)") from None
    except (OSError, ValueError) as exc:
        raise DamagedCheckpointError(f"checkpoint {checkpoint} is damaged: its manifest {path} does not load "
                                     f"({type(exc).__name__}: {exc})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("sha256"), str):
        raise DamagedCheckpointError(f"checkpoint {checkpoint} is damaged: its manifest {path} holds no sha256")
    if manifest.get("file") != os.path.basename(checkpoint):
        raise DamagedCheckpointError(f"checkpoint {checkpoint} is damaged or foreign: its manifest names "
                                     f"{manifest.get('file')!r}")
    size = os.path.getsize(checkpoint)
    if manifest.get("size") != size or file_sha256(checkpoint) != manifest["sha256"]:
        raise DamagedCheckpointError(f"checkpoint {checkpoint} is damaged: its bytes are not the ones written "
                                     f"(SHA-256 or size differs from its manifest's; {size} bytes, manifest "
                                     f"{manifest.get('size')})")
    return manifest


def verify(checkpoint: str, state: dict, run_dir: str | None = None) -> None:
    """Accept ``checkpoint`` (whose loaded ``state`` is given) as a checkpoint of ``run_dir`` (default: the
    folder above its ``checkpoints/``), or raise DamagedCheckpointError / ForeignCheckpointError; module doc."""
    manifest = check_bytes(checkpoint)
    run_dir = run_dir or os.path.dirname(os.path.dirname(os.path.abspath(checkpoint)))
    identity = read_identity(run_dir)
    if identity is None:
        raise ForeignCheckpointError(f"checkpoint {checkpoint} is foreign: its run folder {run_dir} has no "
                                     f"{IDENTITY_NAME}, so it is no fastreg run (or was written before runs "
                                     f"had identities)")
    if manifest.get("run_id") != identity["run_id"]:
        raise ForeignCheckpointError(f"checkpoint {checkpoint} is foreign: it was written by run "
                                     f"{manifest.get('run_id')}, not by {run_dir}'s run {identity['run_id']} "
                                     f"(copied in from another run?)")
    fixed = fixed_config_sha256(from_dict(state["config"]))
    if not manifest.get("fixed_config_sha256") == fixed == identity["fixed_config_sha256"]:
        raise ForeignCheckpointError(f"checkpoint {checkpoint} is foreign: its fixed config fields (variant, reg, "
                                     f"width, ...) are not the ones {run_dir} was started with")
