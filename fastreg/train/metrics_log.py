"""metrics.jsonl (one JSON object per logged step) and, when installed, TensorBoard events.

A run killed between two checkpoints has logged steps that its resume redoes; a full disk can leave
a torn last line. So a log opened for a run at step K (``resumed_at=K``; 0 for a new run) first keeps
only the whole records of steps up to K (rewritten atomically: temporary file, fsync, rename), and
TensorBoard purges its events after K. :func:`read_metrics` skips a line that is not a JSON record
and says so (file and line numbers) instead of failing.
"""

from __future__ import annotations

import json
import math
import os
import warnings


class MetricsLog:
    """Appends records to ``<run>/metrics.jsonl``; mirrors scalars to TensorBoard if available.

    ``resumed_at``: the step the run continues from; records after it (and unreadable lines) are dropped
    first, so every step is logged once and the steps increase.
    """

    def __init__(self, run_dir: str, tensorboard: bool = True, resumed_at: int | None = None):
        self.path = os.path.join(run_dir, "metrics.jsonl")
        if resumed_at is not None:
            truncate_metrics(self.path, resumed_at)
        self._file = open(self.path, "a", buffering=1)
        purge = resumed_at + 1 if resumed_at else None
        self._tb = _tensorboard_writer(run_dir, purge) if tensorboard else None

    def write(self, record: dict) -> None:
        self._file.write(json.dumps(jsonable(record)) + "\n")
        if self._tb is not None:
            step = record.get("step", 0)
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    self._tb.add_scalar(key, value, step)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(run_dir: str) -> list[dict]:
    """Every record of a run's metrics.jsonl, in order; a line that is no JSON object is skipped with a
    warning naming the file and the line."""
    path = os.path.join(run_dir, "metrics.jsonl")
    records, bad = _parse(path)
    if bad:
        shown = ", ".join(f"line {number}: {text[:40]!r}" for number, text in bad[:3])
        warnings.warn(f"{path}: skipped {len(bad)} unreadable line(s) ({shown})", stacklevel=2)
    return records


def truncate_metrics(path: str, step: int) -> int:
    """Keep the whole records of ``path`` with ``step`` <= ``step``; returns how many lines were dropped."""
    if not os.path.exists(path):
        return 0
    records, bad = _parse(path)
    kept = [r for r in records if not isinstance(r.get("step"), (int, float)) or r["step"] <= step]
    dropped = len(records) - len(kept) + len(bad)
    if dropped:
        temporary = path + ".tmp"
        with open(temporary, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    return dropped


def _parse(path: str) -> tuple[list[dict], list[tuple[int, str]]]:
    """(records, [(line number, text) of each line that is not a JSON object])."""
    records, bad = [], []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if isinstance(record, dict):
                records.append(record)
            else:
                bad.append((number, line.strip()))
    return records, bad


def jsonable(value):
    """JSON-safe: non-finite floats as strings ('inf', 'nan': JSON has none, and they stay visible), tuples as
    lists, dict keys as strings, objects other than numbers, strings and None as str."""
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def _tensorboard_writer(run_dir: str, purge_step: int | None = None):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard not installed: metrics.jsonl only
        return None
    return SummaryWriter(log_dir=os.path.join(run_dir, "tensorboard"), purge_step=purge_step)
