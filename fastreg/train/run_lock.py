"""One writer per run folder: ``train`` and ``resume`` hold an exclusive lock on ``<run>/run.lock``.

The lock is ``flock(LOCK_EX | LOCK_NB)`` on that file, held through the open file for the whole run.
The kernel drops it when the holder exits, however it exits (an exception, SIGKILL, a crashed node's
process table gone), so a lock left by a dead process is stale by construction: the next writer simply
takes it. The file itself stays (deleting it would race with a writer opening it); it holds the
holder's pid and host, which a second writer names when it is refused with :class:`RunLockedError`
(the CLI exits with status 2). flock needs a local file system or one that supports it (NFSv4 does).

Under torchrun only rank 0 writes, so only rank 0 locks; the other ranks learn its outcome through
one collective and fail with it, instead of waiting in the first broadcast.

:func:`prepare_run_folder` creates the folder first and turns what can go wrong there (a path that is
a file, a parent that is a file, a read-only or unwritable location) into a ConfigError naming the
option and the path. A folder the lock created is removed again when the run fails before writing
anything into it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket

from .config import ConfigError

LOCK_NAME = "run.lock"


class RunLockedError(ConfigError):
    """Another process holds the run folder's lock; the message names the folder and its pid."""


def prepare_run_folder(path: str, option: str = "out") -> None:
    """Create the run folder ``path`` (and its parents); ConfigError naming ``option`` when that is impossible."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"{option}: {path} is a file, not a folder; choose another --{option}")
    parent = os.path.dirname(os.path.abspath(path))
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if parent and not os.path.isdir(parent):
        raise ConfigError(f"{option}: cannot create the folder {path}: {parent} is a file, not a folder")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{option}: cannot create the folder {path} ({exc.strerror or exc})") from None


class RunLock:
    """The held lock of one run folder; :meth:`release` (or the process's exit) gives it up."""

    def __init__(self, run_dir: str, option: str = "out"):
        self.path = os.path.join(run_dir, LOCK_NAME)
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(f"{option}: cannot write to the run folder {run_dir} "
                              f"({exc.strerror or exc}: {self.path})") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_holder(self._fd)
            os.close(self._fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunLockedError(
                    f"{option}: the run folder {run_dir} is in use by another fastreg process ({holder}, lock "
                    f"{self.path}); wait for it to finish, stop it, or choose another folder") from None
            raise ConfigError(f"{option}: cannot lock the run folder {run_dir} ({exc.strerror or exc})") from None
        try:  # the holder's name is for the message of a refused writer; a full disk leaves it unnamed
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"pid {os.getpid()} on host {socket.gethostname()}\n".encode(), 0)
            os.fsync(self._fd)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text or "pid unknown: it has not written it yet"


@contextlib.contextmanager
def holding(run_dir: str, world, option: str = "out"):
    """Hold ``run_dir``'s lock (rank 0; every rank fails together when it cannot) for the body of the ``with``.

    ``option`` names the command-line option of the folder in the errors (``out`` or ``resume``).
    """
    lock, error = None, None
    created = not os.path.exists(run_dir)
    if world.is_main:
        try:
            prepare_run_folder(run_dir, option)
            lock = RunLock(run_dir, option)
        except ConfigError as exc:
            error = exc
    if world.distributed:  # every rank learns rank 0's outcome
        failed = world.gather(None if error is None else (type(error).__name__, str(error)))[0]
        if failed is not None and error is None:
            error = (RunLockedError if failed[0] == RunLockedError.__name__ else ConfigError)(failed[1])
    if error is not None:
        raise error
    try:
        yield lock
    finally:
        if lock is not None:
            if created and os.listdir(run_dir) == [LOCK_NAME]:  # a run that failed before writing anything
                os.remove(lock.path)
                with contextlib.suppress(OSError):
                    os.rmdir(run_dir)
            lock.release()
