"""Files written by ``torch.save``, read back with their damage detected and without running pickled code.

``torch.load`` does not check a file's integrity: a flipped byte in a tensor's data loads as a changed
weight, a flipped byte in the pickle surfaces as whatever error the unpickler happens to meet (a
``KeyError``, an ``OverflowError`` later on, or a refusal that looks like a malicious file).
:func:`load_verified` first checks the zip archive ``torch.save`` writes: its central directory, and
the CRC-32 of every member (``zipfile.ZipFile.testzip``; each member's stored CRC is compared with
the CRC of its bytes), and that every member is a regular file (a flipped attribute bit in the central
directory passes the CRCs, and torch then reads the member as a folder and loads uninitialised memory).
Only an intact archive is unpickled, with ``torch.load(weights_only=True)``,
which builds tensors, numbers, strings and plain containers and nothing else. So:

- :class:`DamagedFileError`: the archive or a member fails its check, or an intact archive does not
  unpickle (whatever the symptom);
- :class:`UnsafeFileError`: an intact archive whose pickle names a global (a function or class)
  outside ``weights_only``'s allowlist, the way a malicious file runs code. It is refused before
  anything in it runs, and it is the only file called unsafe.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import stat
import zipfile

import torch


class DamagedFileError(ValueError):
    """The file is truncated, corrupted, or not a file ``torch.save`` wrote; the message names it."""


class UnsafeFileError(ValueError):
    """The file's pickle names code (a global outside ``weights_only``'s allowlist); the message names it."""


# Messages of torch's weights_only unpickler that mean the pickle references code (torch/_weights_only_unpickler.py).
CODE_REFERENCES = ("Unsupported global", "is blocked", "reduce for unrecognized function")


def check_archive(path: str) -> None:
    """DamagedFileError unless ``path`` is a zip archive whose members all match their CRC-32."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if not any(name.endswith("data.pkl") for name in names):
                raise DamagedFileError(f"{path} is not a torch.save archive (no data.pkl among {len(names)} members)")
            odd = next((info for info in archive.infolist() if not _is_regular_file(info)), None)
            if odd is not None:
                raise DamagedFileError(f"{path} is damaged: member {odd.filename} is not a regular file (external "
                                       f"attributes 0x{odd.external_attr:08x}); torch would read it as a folder "
                                       f"and load uninitialised memory")
            bad = archive.testzip()
    except DamagedFileError:
        raise
    except Exception as exc:  # BadZipFile, EOFError, struct/zlib errors, ...: a broken directory or header
        raise DamagedFileError(f"{path} is damaged: not a readable zip archive ({type(exc).__name__}: {exc})") from None
    if bad is not None:
        raise DamagedFileError(f"{path} is damaged: member {bad} does not match its CRC-32")


def _is_regular_file(info: zipfile.ZipInfo) -> bool:
    """A member that is a plain file: no trailing slash, no MS-DOS directory bit (0x10 of the external
    attributes), and Unix mode bits (the high 16) either absent or those of a regular file."""
    mode = info.external_attr >> 16
    return (not info.filename.endswith("/") and not info.external_attr & 0x10
            and (mode == 0 or stat.S_ISREG(mode)))


def file_sha256(path: str) -> str:
    """The SHA-256 of the file's bytes, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_verified(path: str, map_location="cpu", legacy: bool = False):
    """The object ``torch.save`` wrote to ``path``, after :func:`check_archive`; see the module doc.

    ``legacy``: also accept a file in torch's pre-1.6 (non-zip) format, which has no CRCs to check
    (for weights files from elsewhere; fastreg itself writes archives).
    Raises FileNotFoundError, :class:`DamagedFileError` or :class:`UnsafeFileError`, each naming the file.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist")
    if not (legacy and not zipfile.is_zipfile(path)):
        check_archive(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        code = next((line for line in lines if any(marker in line for marker in CODE_REFERENCES)), None)
        if code is None:
            raise DamagedFileError(f"{path} is damaged: its pickle does not load ({lines[0] if lines else exc})") \
                from None
        raise UnsafeFileError(f"{path} refused: it holds pickled objects other than tensors and plain containers, "
                              f"which could run arbitrary code when loaded; fastreg loads with "
                              f"torch.load(weights_only=True) and never unpickles them ({code})") from None
    except Exception as exc:  # an intact archive that still does not load: damaged, whatever the symptom
        first = str(exc).strip().splitlines()
        raise DamagedFileError(f"{path} is damaged: {type(exc).__name__}: {first[0] if first else ''}") from None
