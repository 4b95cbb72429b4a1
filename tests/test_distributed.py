"""Data-parallel training: 2 gloo processes on loopback equal one process on the concatenated batch;
torchrun end to end (outputs, one writer, per-rank random states, exact resume); data sharding."""

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest
import torch

import distributed_worker as cases
from fastreg.data import get_dataset
from fastreg.train import distributed
from fastreg.train.batches import BatchStream
from fastreg.train.checkpoint import list_checkpoints, load_checkpoint
from fastreg.train.config import TrainConfig
from fastreg.train.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "distributed_worker.py")
TIMEOUT = 240  # seconds for a whole group of processes; the 2-core CI machine is slow, not stuck


def process_env() -> dict:
    """PYTHONPATH at this checkout, one thread per process, gloo pinned to the loopback interface."""
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    if "lo" in {name for _, name in socket.if_nameindex()}:
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    return env


def run_group(commands: list[list[str]], timeout: float = TIMEOUT) -> list[subprocess.CompletedProcess]:
    """Run the commands concurrently; kill every one still alive on a timeout or failure."""
    procs = [subprocess.Popen(cmd, env=process_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for cmd in commands]
    try:
        outputs = [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return [subprocess.CompletedProcess(p.args, p.returncode, out, err) for p, (out, err) in zip(procs, outputs)]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """What each of 2 gloo processes measured (distributed_worker.run_cases), rank 0 first."""
    out = tmp_path_factory.mktemp("two_ranks")
    store = out / "store"
    results = run_group([[sys.executable, WORKER, str(rank), "2", str(store), str(out)] for rank in range(2)])
    for result in results:
        assert result.returncode == 0, result.stderr[-3000:]
    return [torch.load(out / f"rank{rank}.pt", weights_only=True) for rank in range(2)]


@pytest.mark.parametrize("reg", cases.REGULARIZERS)
def test_d_step_gradients_equal_one_process_on_the_concatenated_batch(reg, two_ranks, tmp_path):
    single = cases.d_step_gradients(reg, distributed.World(), str(tmp_path))
    for rank, measured in enumerate(two_ranks):
        for name, grad in single["grads"].items():
            torch.testing.assert_close(measured[reg]["grads"][name], grad, rtol=0, atol=1e-6,
                                       msg=lambda m, r=rank, n=name: f"{reg} rank {r} grad {n}: {m}")
            torch.testing.assert_close(measured[reg]["params"][name], single["params"][name], rtol=0, atol=1e-6)
        assert any(g.abs().max() > 1e-3 for g in single["grads"].values())  # a real gradient, not zeros


def test_unaveraged_gradients_would_differ(tmp_path):
    """The equality above is not vacuous: rank 0's own half-batch gradient is far from the global one."""
    single = cases.d_step_gradients("gp", distributed.World(), str(tmp_path))
    # Sharded as rank 0 of 2, but this process has no group: its trainer does not average.
    own = cases.d_step_gradients("gp", distributed.World(rank=0, size=2), str(tmp_path))
    gap = max((own["grads"][n] - g).abs().max().item() for n, g in single["grads"].items())
    assert gap > 1e-3


def test_sync_batchnorm_equals_batchnorm_on_the_concatenated_batch(two_ranks):
    single = cases.batchnorm_gradients(distributed.World())
    assert single["layers"] == {"_BatchNorm": 2, "SyncBatchNorm": 0}
    for measured in two_ranks:
        assert measured["batchnorm"]["layers"] == {"_BatchNorm": 2, "SyncBatchNorm": 2}
        for name, grad in single["grads"].items():
            torch.testing.assert_close(measured["batchnorm"]["grads"][name], grad, rtol=0, atol=1e-6)
        for name, buffer in single["buffers"].items():
            torch.testing.assert_close(measured["batchnorm"]["buffers"][name], buffer, rtol=0, atol=1e-6)


@pytest.mark.parametrize("mode", ["trainer_bn_sync", "trainer_bn_broadcast"])
def test_batchnorm_running_statistics_agree_across_ranks(mode, two_ranks):
    rank0, rank1 = (r[mode] for r in two_ranks)
    assert any("running_mean" in name for name in rank0)
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name


def test_metrics_are_averaged_and_randomness_is_per_rank(two_ranks):
    for measured in two_ranks:
        assert measured["facts"]["mean"].tolist() == [1.5, 5.0]
    assert not torch.allclose(two_ranks[0]["facts"]["latents"], two_ranks[1]["facts"]["latents"])
    together = torch.cat([r["facts"]["first_real"] for r in two_ranks])
    one_stream = BatchStream(get_dataset("ring8", seed=0), 8, 0, torch.device("cpu"), torch.float32)
    assert torch.equal(together, one_stream.next())  # the ranks' shards are the global batch


@pytest.mark.parametrize("data", ["ring8", "digits"])
def test_rank_shards_are_disjoint_and_make_the_global_stream(data):
    """Across epoch wraps, and resumed from the middle of an epoch."""
    make = (lambda: get_dataset("ring8", seed=3)) if data == "ring8" else (lambda: get_dataset("digits", 8))
    device, dtype = torch.device("cpu"), torch.float32
    single = BatchStream(make(), 600, 5, device, dtype)
    ranks = [BatchStream(make(), 200, 5, device, dtype, rank=r, world_size=3) for r in range(3)]
    for step in range(7):  # 7 x 600 samples: two wraps of the 1,797 digits
        parts = [s.next() for s in ranks]
        assert torch.equal(torch.cat(parts), single.next()), step
        if step == 3:
            saved = ranks[1].state_dict()
    resumed = BatchStream(make(), 200, 5, device, dtype, rank=1, world_size=3)
    resumed.load_state_dict(saved)
    replay = BatchStream(make(), 200, 5, device, dtype, rank=1, world_size=3)
    for _ in range(4):
        replay.next()
    for _ in range(3):
        assert torch.equal(resumed.next(), replay.next())


def test_batch_larger_than_the_dataset_names_batch_size():
    from fastreg.train.config import ConfigError

    with pytest.raises(ConfigError, match=r"^batch_size: 2000 \(2 processes x 1000\) exceeds the dataset's 1797"):
        BatchStream(get_dataset("digits", 8), 1000, 0, torch.device("cpu"), torch.float32, rank=0, world_size=2)


def test_rank_seeds_are_distinct_and_reproducible():
    seeds = [distributed.rank_seed(0, r) for r in range(4)] + [distributed.rank_seed(1, r) for r in range(4)]
    assert len(set(seeds)) == 8
    assert distributed.rank_seed(0, 1) == distributed.rank_seed(0, 1)


def test_single_process_world_changes_nothing(tmp_path):
    trainer = Trainer(TrainConfig(data="ring8", model="mlp", z_dim=4, batch_size=4, out=str(tmp_path)))
    assert trainer.world == distributed.World() and not trainer.world.distributed
    params = [torch.ones(3)]
    params[0].grad = torch.full((3,), 2.0)
    scalars = trainer.world.average_gradients_(params, torch.tensor([4.0]))
    assert params[0].grad.tolist() == [2.0, 2.0, 2.0] and scalars.tolist() == [4.0]


# --- torchrun end to end -----------------------------------------------------------------------

TORCHRUN_FLAGS = ["--data", "ring8", "--model", "mlp", "--z-dim", "4", "--batch-size", "8", "--reg", "r1",
                  "--device", "cpu", "--log-every", "2", "--checkpoint-every", "3", "--sample-every", "3"]


def torchrun(*args):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "fastreg", "train", *TORCHRUN_FLAGS, *args]
    (result,) = run_group([command])
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_torchrun_two_processes_end_to_end_and_exact_resume(tmp_path):
    """6 steps on 2 processes; a torchrun resume from its step-3 checkpoint must reach the same state."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    torchrun("--steps", "6", "--out", str(straight))

    records = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 6]  # one writer: no line twice
    assert all(r["world_size"] == 2 and r["nonfinite_skipped"] == 0 for r in records)
    assert all(r["penalty"] > 0 and r["d_loss"] > 0 for r in records)
    assert sorted(os.listdir(straight / "samples")) == ["step_000003.png", "step_000006.png"]
    assert set(os.listdir(straight)) - {"tensorboard"} == {"checkpoints", "config.yaml", "metrics.jsonl", "run.lock",
                                                          "run_identity.json", "samples"}
    checkpoints = list_checkpoints(str(straight))
    assert [os.path.basename(p) for p in checkpoints] == ["checkpoint_00000003.pt", "checkpoint_00000006.pt"]
    final = load_checkpoint(checkpoints[-1])
    assert final["world_size"] == 2 and final["step"] == 6 and final["d_steps"] == 6
    rank0, rank1 = final["rng_ranks"]
    assert torch.equal(rank0["torch"], final["rng"]["torch"]) and not torch.equal(rank0["torch"], rank1["torch"])
    assert all(bool(torch.isfinite(t).all()) for t in final["D"].values())

    (split / "checkpoints").mkdir(parents=True)
    shutil.copy(checkpoints[0], split / "checkpoints")  # the run as a crash after step 3 would leave it:
    shutil.copy(checkpoints[0].replace(".pt", ".manifest.json"), split / "checkpoints")  # with its manifest,
    shutil.copy(straight / "run_identity.json", split)  # and the run's identity
    torchrun("--resume", str(split))
    resumed = load_checkpoint(list_checkpoints(str(split))[-1])
    for part in ("step", "d_steps", "G", "D", "G_ema", "opt_g", "opt_d", "rng", "rng_ranks", "data"):
        _assert_equal_trees(resumed[part], final[part], part)
    assert [json.loads(line)["step"] for line in (split / "metrics.jsonl").read_text().splitlines()] == [4, 6]


def _assert_equal_trees(a, b, where):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for key in a:
            _assert_equal_trees(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_equal_trees(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"
