"""An endless, seeded, resumable stream of real batches for the trainer."""

from __future__ import annotations

import torch


class BatchStream:
    """Batches of real samples, reshuffled every epoch by its own seeded generator.

    Works on toy mixtures (objects with ``sample(n)`` and their own state), on
    in-memory image datasets (``.images`` tensor) and on any indexable dataset
    yielding ``(image, label)``. ``state_dict`` records the epoch's shuffle seed
    state and the position in it, so a resumed run sees the same batches.
    """

    def __init__(self, dataset, batch_size: int, seed: int, device: torch.device, dtype: torch.dtype):
        self.dataset, self.batch_size, self.device, self.dtype = dataset, batch_size, device, dtype
        self.is_toy = hasattr(dataset, "sample")
        self._generator = torch.Generator().manual_seed(seed)
        if not self.is_toy:
            if len(dataset) < batch_size:
                raise ValueError(f"batch_size: {batch_size} exceeds the dataset's {len(dataset)} samples")
            self._new_epoch()

    def _new_epoch(self) -> None:
        self._epoch_state = self._generator.get_state()
        self._order = torch.randperm(len(self.dataset), generator=self._generator)
        self._position = 0

    def next(self) -> torch.Tensor:
        if self.is_toy:
            batch = self.dataset.sample(self.batch_size)
        else:
            if self._position + self.batch_size > len(self._order):
                self._new_epoch()
            index = self._order[self._position:self._position + self.batch_size]
            self._position += self.batch_size
            batch = self._gather(index)
        return batch.to(device=self.device, dtype=self.dtype, non_blocking=True)

    def _gather(self, index: torch.Tensor) -> torch.Tensor:
        images = getattr(self.dataset, "images", None)
        if isinstance(images, torch.Tensor):
            return images[index]
        return torch.stack([self.dataset[int(i)][0] for i in index])

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
