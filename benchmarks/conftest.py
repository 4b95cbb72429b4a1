import torch

import fastreg
import quality

_SNAPSHOTS = {}


def pytest_sessionstart(session):
    """The load and the calibration kernel before the first benchmark (benchmarks/quality.py)."""
    _SNAPSHOTS["before"] = quality.snapshot()


def pytest_benchmark_update_json(config, benchmarks, output_json):
    """The run's quality record: load and calibration before and after, this machine's idle calibration time,
    and the verdict of :func:`quality.assess` (benchmarks/report.py recomputes it from the same record)."""
    from fastreg.ops.backend import device_tag

    key = quality.machine_key(device_tag(), torch.get_num_threads())
    output_json["quality"] = {"before": _SNAPSHOTS.get("before") or quality.snapshot(), "after": quality.snapshot(),
                              "machine": key, "idle_calibration_s": quality.load_idle().get(key)}
    output_json["quality"]["verdict"] = quality.assess(output_json)


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["fastreg"] = fastreg.backend_info()
    machine_info["torch_threads"] = torch.get_num_threads()
    if torch.cuda.is_available():
        machine_info["gpu"] = torch.cuda.get_device_name()


def synchronized(fn, device):
    """Wrap fn so each timed call waits for the GPU to finish."""
    if device != "cuda":
        return fn

    def run():
        out = fn()
        torch.cuda.synchronize()
        return out

    return run


def peak_step_memory(fn, device) -> float:
    """Peak bytes live at once during one call of ``fn`` beyond those live before it.

    CUDA: ``max_memory_allocated`` after ``reset_peak_memory_stats``, minus ``memory_allocated`` before.
    CPU (no allocator statistics): the profiler's allocation records (``profile_memory=True``): each op's own
    allocations minus frees (``self_cpu_memory_usage``), summed in the order the ops started; the running
    sum's maximum. Op granularity: an op's temporaries freed inside it count as its net, so this is a close
    lower bound of the true peak, comparable across implementations of the same step.
    """
    if device == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return float(torch.cuda.max_memory_allocated() - before)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.start)
    live = peak = 0
    for event in events:
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return float(peak)
