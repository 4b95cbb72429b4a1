"""Files written by ``torch.save``, read back with their damage detected and without running pickled code.

``torch.load`` does not check a file's integrity: a flipped byte in a tensor's data loads as a changed
weight, a flipped byte in the pickle surfaces as whatever error the unpickler happens to meet (a
``KeyError``, an ``OverflowError`` later on, or a refusal that looks like a malicious file).
:func:`load_verified` first checks the zip archive ``torch.save`` writes: its central directory, and
the CRC-32 of every member (``zipfile.ZipFile.testzip``; each member's stored CRC is compared with
the CRC of its bytes). Only an intact archive is unpickled, with ``torch.load(weights_only=True)``,
which builds tensors, numbers, strings and plain containers and nothing else. So:

- :class:`DamagedFileError`: the archive or a member fails its check, or an intact archive does not
  unpickle (whatever the symptom);
- :class:`UnsafeFileError`: an intact archive whose pickle names a global (a function or class)
  outside ``weights_only``'s allowlist, the way a malicious file runs code. It is refused before
  anything in it runs, and it is the only file called unsafe.
"""

from __future__ import annotations

import os
import pickle
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
            bad = archive.testzip()
    except DamagedFileError:
        raise
    except Exception as exc:  # BadZipFile, EOFError, struct/zlib errors, ...: a broken directory or header
        raise DamagedFileError(f"{path} is damaged: not a readable zip archive ({type(exc).__name__}: {exc})") from None
    if bad is not None:
        raise DamagedFileError(f"{path} is damaged: member {bad} does not match its CRC-32")


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
