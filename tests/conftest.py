import pytest
import torch

import fastreg


# The compile caches key a graph by its forward ops only, not by the Python autograd registered for them: a
# cache written before the backward op was renamed (_grad_penalty_backward) would replay a backward that calls
# the old name. Tagging the keys with the ops' revision keeps this suite off such entries (torch.compiler.config).
torch.compiler.config.cache_key_tag = "fastreg-ops-2"


@pytest.fixture(autouse=True)
def _native_backend():
    """Every test starts on the native backend with a fixed seed."""
    with fastreg.backend.use_backend("native"):
        torch.manual_seed(0)
        yield


def train_shared_run(tmp_path_factory, name: str, **fields):
    """Train one small run for a module's tests (one thread, the caller's RNG untouched); returns its folder."""
    from fastreg.train.config import TrainConfig
    from fastreg.train.trainer import train

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            out = tmp_path_factory.mktemp(name) / "run"
            train(TrainConfig(**fields, out=str(out)))
    finally:
        torch.set_num_threads(previous)
    return out


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of many tiny training steps: on a shared 2-core machine the
    thread pool's spin-up and hand-offs cost more than these steps (seconds for 10 toy iterations)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True, scope="session")
def _private_fastreg_cache(tmp_path_factory):
    """FASTREG_CACHE points at a fresh folder for the whole session (subprocesses inherit it), so tests
    never read or write ~/.cache/fastreg; cached FID classifiers are shared between the session's tests."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FASTREG_CACHE", str(tmp_path_factory.mktemp("fastreg_cache")))
        yield


# A 10-step toy run with checkpoints at steps 5 and 10 (shared by the fault tests: copy it before changing it).
TOY_RUN = dict(data="ring8", model="mlp", z_dim=4, batch_size=8, log_every=5, sample_every=1000, ema=0.9, steps=10,
               checkpoint_every=5)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """The folder of a trained :data:`TOY_RUN` (one thread, the caller's random state untouched)."""
    from fastreg.train.config import TrainConfig
    from fastreg.train.trainer import train

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("toy") / "run"
    with torch.random.fork_rng(devices=[]):
        train(TrainConfig(**TOY_RUN, out=str(out)))
    torch.set_num_threads(previous)
    return out
