"""One rank of the 2-process gloo group of tests/test_distributed.py, and the cases it runs.

    python tests/distributed_worker.py RANK WORLD_SIZE STORE_FILE OUT_DIR

Joins the group through a FileStore (nothing to choose, no port to collide; gloo itself talks over
loopback), runs every case and saves what it measured to ``OUT_DIR/rank<RANK>.pt``. The test runs
the same case functions in one process on the concatenated batch and compares.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist

from fastreg.regularizers import penalties
from fastreg.models import DCGANGenerator
from fastreg.train import distributed
from fastreg.train.config import TrainConfig
from fastreg.train.trainer import Trainer

GLOBAL_BATCH = 12
REGULARIZERS = ("roth", "gp", "r1")


def shard(tensor: torch.Tensor, world: distributed.World) -> torch.Tensor:
    """This rank's rows of a global batch."""
    n = tensor.shape[0] // world.size
    return tensor[world.rank * n:(world.rank + 1) * n]


def d_step_gradients(reg: str, world: distributed.World, out: str) -> dict:
    """D's parameter gradients and parameters after one trainer D step (float64, no instance noise)
    on this rank's shard of a fixed global batch, with fixed interpolation weights for gp."""
    g = torch.Generator().manual_seed(1234)
    x_real = torch.randn(GLOBAL_BATCH, 2, generator=g, dtype=torch.float64) * 2
    x_fake = torch.randn(GLOBAL_BATCH, 2, generator=g, dtype=torch.float64)
    eps = shard(torch.rand(GLOBAL_BATCH, 1, generator=g, dtype=torch.float64), world)
    config = TrainConfig(variant="ns", reg=reg, data="ring8", model="mlp", z_dim=4, dtype="float64", noise=0.0,
                         batch_size=GLOBAL_BATCH // world.size, out=out)
    trainer = Trainer(config)
    trainer.steps.d_inputs = lambda *args, **kwargs: (shard(x_real, world), shard(x_fake, world))
    original = penalties.random_interpolate
    penalties.random_interpolate = lambda a, b, generator=None: eps * a + (1 - eps) * b
    try:
        trainer.steps.d_step()
    finally:
        penalties.random_interpolate = original
    return {"grads": {name: p.grad.clone() for name, p in trainer.D.named_parameters()},
            "params": {name: p.detach().clone() for name, p in trainer.D.named_parameters()}}


def batchnorm_gradients(world: distributed.World) -> dict:
    """A DCGAN generator (BatchNorm in every block) on this rank's latents, synced across ranks:
    averaged parameter gradients and running statistics."""
    torch.manual_seed(7)
    G = DCGANGenerator(z_dim=4, width=8, resolution=16, channels=1).double()
    if world.distributed:
        G = distributed.convert_sync_batchnorm(G)
    z = torch.randn(GLOBAL_BATCH, 4, generator=torch.Generator().manual_seed(99), dtype=torch.float64)
    out = G(shard(z, world))
    ((out * out).mean() + out.mean()).backward()
    world.average_gradients_(list(G.parameters()))
    return {"grads": {name: p.grad.clone() for name, p in G.named_parameters()},
            "buffers": {name: b.clone() for name, b in G.named_buffers()},
            "layers": {kind.__name__: sum(isinstance(m, kind) for m in G.modules())
                       for kind in (torch.nn.modules.batchnorm._BatchNorm, distributed.SyncBatchNorm)}}


def trainer_batchnorm_buffers(world: distributed.World, out: str, sync: bool) -> dict:
    """Two iterations of a digits DCGAN (BatchNorm in G and D): each rank's running statistics."""
    config = TrainConfig(data="digits", resolution=8, width=8, z_dim=8, batch_size=8, sync_batchnorm=sync, out=out)
    trainer = Trainer(config)
    for _ in range(2):
        trainer.iteration()
    return {f"{prefix}.{name}": b.clone() for prefix, module in (("G", trainer.G), ("D", trainer.D))
            for name, b in module.named_buffers()}


def per_rank_facts(world: distributed.World, out: str) -> dict:
    """The metric mean over ranks, and each rank's first latents (they must differ)."""
    trainer = Trainer(TrainConfig(data="ring8", model="mlp", z_dim=4, batch_size=4, out=out))
    return {"mean": world.mean(torch.tensor([world.rank + 1.0, 10.0 * world.rank])),
            "latents": trainer.steps.latent(3),
            "first_real": trainer.real.next()}


def run_cases(world: distributed.World, out: str) -> dict:
    results = {reg: d_step_gradients(reg, world, out) for reg in REGULARIZERS}
    results["batchnorm"] = batchnorm_gradients(world)
    results["trainer_bn_sync"] = trainer_batchnorm_buffers(world, out, sync=True)
    results["trainer_bn_broadcast"] = trainer_batchnorm_buffers(world, out, sync=False)
    results["facts"] = per_rank_facts(world, out)
    return results


def main(argv: list[str]) -> None:
    rank, size, store, out = int(argv[1]), int(argv[2]), argv[3], argv[4]
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=size,
                            timeout=timedelta(seconds=90))
    try:
        results = run_cases(distributed.current(), out)
        torch.save(results, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv)
