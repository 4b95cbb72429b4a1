"""metrics.jsonl (one JSON object per logged step) and, when installed, TensorBoard events.

A run killed between two checkpoints has logged steps that its resume redoes; a full disk can leave
a torn last line. So a log opened for a run at step K (``resumed_at=K``; 0 for a new run) first keeps
only the whole records of steps up to K (rewritten atomically: temporary file, fsync, rename), ends a
last record that lacks its newline with one (the record is kept), and TensorBoard purges its events
after K. A full disk is :class:`fastreg.atomic.DiskFullError`, one line naming the file.
:func:`read_metrics` skips a line that is not a JSON record
and says so (file and line numbers) instead of failing.
"""

from __future__ import annotations

import json
import math
import os
import warnings

from ..atomic import DiskFullError, atomic_write, is_disk_full


class MetricsLog:
    """Appends records to ``<run>/metrics.jsonl``; mirrors scalars to TensorBoard if available.

    ``resumed_at``: the step the run continues from; records after it (and unreadable lines) are dropped
    first, so every step is logged once and the steps increase.
    """

    def __init__(self, run_dir: str, tensorboard: bool = True, resumed_at: int | None = None):
        self.path = os.path.join(run_dir, "metrics.jsonl")
        if resumed_at is not None:
            truncate_metrics(self.path, resumed_at)
        try:
            end_with_newline(self.path)
            self._file = open(self.path, "a", buffering=1)
        except OSError as exc:
            raise DiskFullError(self.path) if is_disk_full(exc) else exc from None
        purge = resumed_at + 1 if resumed_at else None
        self._tb = _tensorboard_writer(run_dir, purge) if tensorboard else None

    def write(self, record: dict) -> None:
        """Append one record; a full disk raises :class:`fastreg.atomic.DiskFullError` (a torn last line is
        dropped, or kept and ended, by the next resume)."""
        try:
            self._file.write(json.dumps(jsonable(record)) + "\n")
        except OSError as exc:
            if is_disk_full(exc):
                raise DiskFullError(self.path) from None
            raise
        if self._tb is not None:
            step = record.get("step", 0)
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    self._tb.add_scalar(key, value, step)

    def close(self) -> None:
        try:
            self._file.close()
        except OSError as exc:
            if not is_disk_full(exc):
                raise
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
        with atomic_write(path) as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)
    return dropped


def end_with_newline(path: str) -> None:
    """A final record written without its newline (a kill or a full disk after the record) is kept: the
    newline is written, so the next record does not land on the same line."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) != b"\n":
            f.write(b"\n")
            f.flush()
            os.fsync(f.fileno())


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
