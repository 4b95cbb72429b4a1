"""An endless, seeded, resumable stream of real batches for the trainer, sharded across ranks."""

from __future__ import annotations

import torch

from ..data.images import images_at
from .config import ConfigError


class BatchStream:
    """Batches of real samples, reshuffled every epoch by its own seeded generator.

    Works on toy mixtures (objects with ``sample(n)`` and their own state), on
    in-memory image datasets (``.images`` tensor) and on any indexable dataset
    yielding ``(image, label)``. ``state_dict`` records the epoch's shuffle seed
    state and the position in it, so a resumed run sees the same batches.

    Under data-parallel training (``world_size`` processes) every rank holds the same
    stream of global batches of ``world_size * batch_size`` samples and takes its own
    slice, rows ``[rank * batch_size, (rank + 1) * batch_size)``: the ranks' batches are
    disjoint, and together they are the batch one process with ``world_size * batch_size``
    would draw. The position is the same on every rank, so one rank's state resumes all.
    """

    def __init__(self, dataset, batch_size: int, seed: int, device: torch.device, dtype: torch.dtype,
                 rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"BatchStream: rank must lie in [0, world_size) = [0, {world_size}), got {rank}")
        self.dataset, self.batch_size, self.device, self.dtype = dataset, batch_size, device, dtype
        self.rank, self.world_size = rank, world_size
        self.global_batch = batch_size * world_size
        self.is_toy = hasattr(dataset, "sample")
        self._generator = torch.Generator().manual_seed(seed)
        if not self.is_toy:
            if len(dataset) < self.global_batch:
                per_rank = f" ({world_size} processes x {batch_size})" if world_size > 1 else ""
                raise ConfigError(f"batch_size: {self.global_batch}{per_rank} exceeds the dataset's "
                                  f"{len(dataset)} samples")
            self._new_epoch()

    def _new_epoch(self) -> None:
        self._epoch_state = self._generator.get_state()
        self._order = torch.randperm(len(self.dataset), generator=self._generator)
        self._position = 0

    def _shard(self) -> slice:
        return slice(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)

    def next(self) -> torch.Tensor:
        if self.is_toy:
            batch = self.dataset.sample(self.global_batch)[self._shard()]
        else:
            if self._position + self.global_batch > len(self._order):
                self._new_epoch()
            index = self._order[self._position:self._position + self.global_batch][self._shard()]
            self._position += self.global_batch
            batch = images_at(self.dataset, index)
        return batch.to(device=self.device, dtype=self.dtype, non_blocking=True)

    def state_dict(self) -> dict:
        if self.is_toy:
            return {"toy": self.dataset.state_dict()}
        return {"epoch_state": self._epoch_state, "position": self._position}

    def load_state_dict(self, state: dict) -> None:
        if self.is_toy:
            self.dataset.load_state_dict(state["toy"])
            return
        self._generator.set_state(state["epoch_state"])
        self._new_epoch()
        self._position = int(state["position"])
