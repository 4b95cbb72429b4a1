"""Data-parallel training across processes (``torchrun``): gradients averaged explicitly.

Under ``torchrun --nproc_per_node=N -m fastreg train ...`` every process runs the same
:class:`~fastreg.train.trainer.Trainer` on its own shard of the data. G and D stay plain modules;
after each backward the trainer averages the gradients of the parameters it is about to update
with one ``all_reduce`` over a flattened buffer (:meth:`World.average_gradients_`), and the
parameters start equal because rank 0's are broadcast. This sidesteps DistributedDataParallel's
autograd hooks, which do not see the double backward of a gradient penalty
(``autograd.grad(create_graph=True)`` followed by ``backward``): the averaged gradient is, by
construction, the gradient of the mean loss over the union of the per-rank batches
(``tests/test_distributed.py`` checks it against one process on the concatenated batch).

- Backends: gloo on CPU, NCCL on CUDA (each process on ``cuda:LOCAL_RANK``).
- Seeds: the networks are built from the run seed on every rank (then broadcast from rank 0 for
  good measure); the per-rank randomness (latents, noise, interpolation weights) comes from
  :func:`rank_seed`.
- BatchNorm: :func:`convert_sync_batchnorm` swaps every BatchNorm layer for
  :class:`SyncBatchNorm`, which normalizes with the statistics of the global batch (works on
  gloo and NCCL). Without it each rank normalizes with its own batch and the running statistics
  are broadcast from rank 0 after every iteration (:meth:`World.broadcast_buffers_`), as
  DistributedDataParallel does.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

TIMEOUT = timedelta(minutes=10)


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (a single process when ``size == 1``)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def broadcast_(self, tensors) -> None:
        """Overwrite ``tensors`` in place with rank 0's values."""
        if not self.distributed:
            return
        for tensor in tensors:
            dist.broadcast(tensor.data, src=0)

    def broadcast_module_(self, module: nn.Module | None) -> None:
        """Rank 0's parameters and buffers everywhere."""
        if module is not None:
            self.broadcast_([*module.parameters(), *module.buffers()])

    def broadcast_buffers_(self, module: nn.Module | None) -> None:
        """Rank 0's buffers (BatchNorm running statistics) everywhere."""
        if module is not None:
            self.broadcast_(list(module.buffers()))

    def average_gradients_(self, params, scalars: torch.Tensor | None = None) -> torch.Tensor | None:
        """Replace each ``p.grad`` by its mean over the ranks, with one all_reduce.

        ``scalars`` (a 1-D tensor, e.g. this step's losses) rides in the same buffer and comes
        back averaged, so every rank sees the same values (and the same NaN) for its checks.
        Parameters without a gradient are skipped; they are the same on every rank.
        """
        if not self.distributed:
            return scalars
        grads = [p.grad for p in params if p.grad is not None]
        parts = [g.reshape(-1) for g in grads]
        dtype = grads[0].dtype if grads else torch.float64
        if scalars is not None:
            parts.append(scalars.to(dtype))
        if not parts:
            return scalars
        flat = torch.cat(parts)
        dist.all_reduce(flat)
        flat.div_(self.size)
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()
        return flat[offset:].to(scalars.dtype) if scalars is not None else None

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The mean of ``values`` over the ranks (``values`` itself on one process)."""
        if not self.distributed:
            return values
        values = values.clone()
        dist.all_reduce(values)
        return values / self.size

    def gather(self, obj) -> list:
        """``[obj of rank 0, obj of rank 1, ...]`` on every rank."""
        if not self.distributed:
            return [obj]
        out = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def current() -> World:
    """The world of the initialized default process group, else a single process."""
    if dist.is_available() and dist.is_initialized():
        rank = dist.get_rank()
        return World(rank, dist.get_world_size(), int(os.environ.get("LOCAL_RANK", rank)))
    return World()


def launched_size() -> int:
    """WORLD_SIZE as set by torchrun (1 when not launched by it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def backend_for(device: str) -> str:
    """NCCL for CUDA runs, gloo for CPU runs (``device`` as in the config: auto, cpu, cuda...)."""
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return "nccl" if cuda else "gloo"


@contextlib.contextmanager
def process_group(device: str = "auto"):
    """Join the process group torchrun describes for the body of the ``with`` (no-op otherwise).

    Reads torchrun's environment (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). A group
    that is already initialized (a test, or a caller of its own) is used as it is and left open.
    Yields the :class:`World`.
    """
    if launched_size() <= 1 or dist.is_initialized():
        yield current()
        return
    backend = backend_for(device)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=TIMEOUT)
    try:
        yield current()
    finally:
        dist.destroy_process_group()


def rank_seed(seed: int, rank: int) -> int:
    """A seed for rank ``rank`` of a run seeded with ``seed``: distinct per rank, reproducible."""
    return int(np.random.SeedSequence([seed % 2**63, rank]).generate_state(1, dtype=np.uint64)[0] % 2**63)


# --- BatchNorm over the global batch -------------------------------------------------------------

class SyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the batch across every rank.

    Differentiable (the reductions go through ``torch.distributed.nn.functional.all_reduce``), so
    the averaged parameter gradients equal those of one process with plain BatchNorm on the
    concatenated batch. Works on gloo (CPU) and NCCL; ``torch.nn.SyncBatchNorm`` is CUDA-only.
    Outside training, or on one process, it is ordinary BatchNorm.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"SyncBatchNorm: expected an input of at least 2 dimensions, got {input.dim()}")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        from torch.distributed.nn.functional import all_reduce

        dims = [d for d in range(input.dim()) if d != 1]
        count = all_reduce(input.new_tensor([input.numel() / input.shape[1]]))
        mean = all_reduce(input.sum(dims)) / count
        shape = [1, -1] + [1] * (input.dim() - 2)
        centred = input - mean.reshape(shape)
        var = all_reduce((centred * centred).sum(dims)) / count
        self._update_running_stats(mean.detach(), var.detach(), count.detach())
        out = centred * torch.rsqrt(var + self.eps).reshape(shape)
        if self.affine:
            out = out * self.weight.reshape(shape) + self.bias.reshape(shape)
        return out

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, count: torch.Tensor) -> None:
        """Running statistics as BatchNorm keeps them (unbiased variance), without a host sync."""
        if not self.track_running_stats:
            return
        self.num_batches_tracked += 1
        dtype = self.running_mean.dtype
        if self.momentum is None:  # cumulative average
            momentum = (1.0 / self.num_batches_tracked).to(dtype)
        else:
            momentum = torch.full((), self.momentum, dtype=dtype, device=mean.device)
        unbiased = var * (count / (count - 1).clamp(min=1))
        self.running_mean.lerp_(mean.to(dtype), momentum)
        self.running_var.lerp_(unbiased.to(dtype), momentum)


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every BatchNorm layer replaced by a :class:`SyncBatchNorm` holding its state."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, SyncBatchNorm):
        synced = SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                               module.track_running_stats)
        floating = [t for t in module.state_dict().values() if t.is_floating_point()]
        if floating:
            synced = synced.to(floating[0].device, floating[0].dtype)
        synced.load_state_dict(module.state_dict())
        return synced.train(module.training)
    for name, child in module.named_children():
        setattr(module, name, convert_sync_batchnorm(child))
    return module


__all__ = ["SyncBatchNorm", "World", "backend_for", "convert_sync_batchnorm", "current", "process_group",
           "rank_seed"]
