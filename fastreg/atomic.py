"""Every file fastreg writes is written atomically, and a full disk is one clear error.

:func:`atomic_write` writes to a temporary file in the destination's own folder (``.<name>.<pid>.tmp``:
the same file system, so the rename cannot copy), flushes and fsyncs it, renames it over the
destination (atomic on POSIX) and fsyncs the folder. A process killed at any moment leaves either
the previous file or the new one under the final name, never a torn or empty one; a writer that fails
(an exception, a full disk) removes its temporary file. Temporary files left by a killed writer are
removed by the next write of the same file (:func:`remove_stale_temporaries`: those whose process is
gone).

A full disk (``ENOSPC``, or a quota's ``EDQUOT``), whatever layer reports it (``torch.save`` wraps it in a
``RuntimeError: unexpected pos``), becomes :class:`DiskFullError`: an ``OSError`` naming the file, whose
message is one line; the command line prints it and exits with status 2.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import re

FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """No space left on the device holding ``filename``; nothing was written under that name."""

    def __init__(self, path: str):
        folder = os.path.dirname(os.path.abspath(path))
        super().__init__(errno.ENOSPC, f"no space left on the device of {folder}: could not write {path} (the "
                                       f"previous version, if any, is kept); free some space and run it again",
                         path)

    def __str__(self) -> str:
        return self.strerror


def _open(path: str, mode: str):
    """The temporary file's opener (the fault-injection tests replace it with one whose disk fills up)."""
    return open(path, mode) if "b" in mode else open(path, mode, encoding="utf-8")


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` or an exception it was raised from or during is a full disk (ENOSPC, EDQUOT)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in FULL:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def temporary_name(path: str) -> str:
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}.{os.getpid()}.tmp")


def remove_stale_temporaries(path: str) -> None:
    """Remove the temporary files of ``path`` whose writing process no longer exists (``.<name>.<pid>.tmp``, and
    ``<name>.<pid>.tmp`` of earlier fastreg versions)."""
    folder, name = os.path.split(os.path.abspath(path))
    pattern = os.path.join(glob.escape(folder), "{}" + glob.escape(name) + ".*.tmp")
    for stale in glob.glob(pattern.format(".")) + glob.glob(pattern.format("")):
        match = re.search(r"\.(\d+)\.tmp$", stale)
        if match is None or (int(match.group(1)) != os.getpid() and _alive(int(match.group(1)))):
            continue
        with contextlib.suppress(OSError):
            os.remove(stale)


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "w", temporary: str | None = None):
    """``with atomic_write(path) as f: f.write(...)``: ``path`` is replaced by what was written only when the
    body finishes; on any exception the temporary file is removed and ``path`` is left as it was. A full
    disk raises :class:`DiskFullError`. ``mode``: ``"w"`` (text, UTF-8) or ``"wb"``; ``temporary``: the temporary
    file's name when the caller manages its own (default :func:`temporary_name`, stale ones removed here)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode: atomic_write takes 'w' or 'wb', got {mode!r}")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if temporary is None:
        remove_stale_temporaries(path)
        temporary = temporary_name(path)
    try:
        with _open(temporary, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        if is_disk_full(exc) or (isinstance(exc, Exception) and _no_space_left(folder)):
            raise DiskFullError(path) from None
        raise
    fsync_directory(folder)


def write_text(path: str, text: str) -> None:
    """``path`` atomically replaced by ``text`` (UTF-8)."""
    with atomic_write(path, "w") as f:
        f.write(text)


def fsync_directory(folder: str) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _no_space_left(folder: str) -> bool:
    """Whether ``folder``'s file system has no block left (a layer that hid the ENOSPC it met)."""
    try:
        return os.statvfs(folder).f_bavail == 0
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
