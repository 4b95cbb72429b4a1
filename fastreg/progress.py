"""Progress of fastreg's long commands, on a terminal and in a log file.

- On a terminal (stderr a TTY), a tqdm bar on stderr.
- When stdout is not a terminal (redirected to a file, a pipe, a CI log), plain lines on stdout as
  well: one per logging interval or finished stage, so a log shows where a run is.
- Every command ends with one summary line on stdout either way (printed by the command).
"""

from __future__ import annotations

import contextlib
import sys
import time


def stdout_is_terminal() -> bool:
    """Whether stdout is a TTY (then the bar says it all and no plain progress lines are printed)."""
    isatty = getattr(sys.stdout, "isatty", None)
    return bool(isatty and isatty())


def plain_line(text: str) -> None:
    """``text`` on stdout when stdout is not a terminal (a log gets a line where a terminal gets the bar)."""
    if not stdout_is_terminal():
        print(text, flush=True)


def bar(iterable=None, **kwargs):
    """A tqdm bar on stderr, shown only when stderr is a terminal (``disable=None``), resizing with it."""
    from tqdm.auto import tqdm

    return tqdm(iterable, **{"disable": None, "dynamic_ncols": True, **kwargs})


class Stages:
    """A bar over a command's named stages, and a plain line per finished stage when stdout is not a terminal.

    ``with stages.stage("vanishing gradients"):`` wraps one stage; the line says how long it took.
    """

    def __init__(self, command: str, total: int):
        self.command, self.start = command, time.perf_counter()
        self.bar = bar(total=total, desc=command, unit="stage")

    @contextlib.contextmanager
    def stage(self, name: str):
        self.bar.set_postfix_str(name)
        start = time.perf_counter()
        yield
        self.bar.update()
        plain_line(f"{self.command}: {name} done ({time.perf_counter() - start:.1f} s)")

    def close(self) -> float:
        """Close the bar; returns the seconds since the start."""
        self.bar.close()
        return time.perf_counter() - self.start
