import torch

import fastreg


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
