"""The non-finite guard: losses, penalties, batches and gradients checked on every update.

Before each optimizer step the trainer hands the guard the step's watched values: the data
batches' and losses' values and each parameter gradient's largest magnitude (one ``_foreach_norm``
with ``ord=inf``, NaN-propagating). Under DDP they have been averaged over the ranks, so every
rank reaches the same verdict. Two policies (``--on-nonfinite``):

- ``stop``: raise :class:`NonFiniteError` naming the first non-finite tensor; the trainer writes
  the step's diagnostics and leaves the last good checkpoint as the newest one. On CUDA the
  values stay on the device and the trainer reads them every ``nonfinite_check_every`` steps (and
  before every checkpoint), so the host syncs once per check, not once per update.
- ``skip``: drop that update (the optimizer does not step) and count it. The decision is needed
  before the step, so ``skip`` reads one flag per update (the sync AMP's GradScaler makes too).

Under ``amp=fp16`` gradient overflow is GradScaler's business (it skips the step and lowers the
scale); the guard then watches the losses and batches only.
"""

from __future__ import annotations

import math

import torch

from .config import NONFINITE_POLICIES as POLICIES

SHOWN = 4  # non-finite names an error message lists (the diagnostics file has them all)


class NonFiniteError(RuntimeError):
    """A watched tensor was NaN or infinite under ``on_nonfinite=stop``.

    ``step`` and ``update`` locate it, ``tensor`` names the first non-finite value, ``values``
    holds every value watched at that update (name -> float), ``detected_at`` is the update at
    which the check ran; the trainer adds ``diagnostics`` and ``checkpoint``.
    """

    diagnostics: str | None = None  # the report the trainer wrote
    checkpoint: str | None = None   # the last good checkpoint, if any

    def __init__(self, tensor: str, step: int, update: int, values: dict, detected_at: int):
        self.tensor, self.step, self.update, self.values, self.detected_at = tensor, step, update, values, detected_at
        bad = [name for name, value in values.items() if not math.isfinite(value)]
        listed = ", ".join(bad[:SHOWN]) + (f" and {len(bad) - SHOWN} more" if len(bad) > SHOWN else "")
        super().__init__(f"non-finite {tensor} = {values[tensor]} at step {step} (update {update}); "
                         f"non-finite at that update: {listed}")


class NonFiniteGuard:
    """Watches each update's values; ``check`` says whether the update may be applied."""

    def __init__(self, policy: str = "stop", defer: bool | None = None):
        """``defer``: keep ``stop``'s values until :meth:`flush` (default: for values off the CPU)."""
        if policy not in POLICIES:
            raise ValueError(f"on_nonfinite: unknown policy {policy!r}; expected one of {', '.join(POLICIES)}")
        self.policy, self.defer = policy, defer
        self.skipped = 0      # updates dropped under "skip"
        self.updates = 0      # updates watched
        self.last_skipped: list[str] = []
        self._pending: list[tuple[int, int, list[str], torch.Tensor]] = []

    @staticmethod
    def watched_values(scalars: torch.Tensor, grads: list[torch.Tensor]) -> torch.Tensor:
        """``scalars`` followed by each gradient's max |entry| (NaN if it holds a NaN), one vector."""
        if not grads:
            return scalars.double()
        peaks = torch.stack(torch._foreach_norm(grads, float("inf"))).double()
        return torch.cat([scalars.double(), peaks])

    def check(self, step: int, names: list[str], values: torch.Tensor) -> bool:
        """True when the update may be applied.

        ``skip`` decides now (one host read). ``stop`` raises now for CPU values; CUDA values wait
        for the next :meth:`flush` (the trainer flushes every few steps and before checkpoints).
        """
        update, self.updates = self.updates, self.updates + 1
        if self.policy == "skip":
            finite = bool(torch.isfinite(values).all())
            if not finite:
                self.skipped += 1
                self.last_skipped = _non_finite_names(names, values.cpu())
            return finite
        self._pending.append((step, update, names, values))
        if not (values.device.type != "cpu" if self.defer is None else self.defer):
            self.flush()
        return True

    def flush(self) -> None:
        """Read the pending values (one host transfer); raise NonFiniteError on the first bad one."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        values = torch.cat([v for *_, v in pending]).cpu()
        if bool(torch.isfinite(values).all()):
            return
        offset = 0
        for step, update, names, _ in pending:
            row = values[offset:offset + len(names)]
            offset += len(names)
            bad = _non_finite_names(names, row)
            if bad:
                raise NonFiniteError(bad[0], step, update, dict(zip(names, row.tolist())),
                                     detected_at=self.updates - 1)

    def state_dict(self) -> dict:
        return {"skipped": self.skipped, "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.skipped, self.updates = int(state["skipped"]), int(state["updates"])


def _non_finite_names(names: list[str], values: torch.Tensor) -> list[str]:
    finite = torch.isfinite(values).tolist()
    return [name for name, ok in zip(names, finite) if not ok]
