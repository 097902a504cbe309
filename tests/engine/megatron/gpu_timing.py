"""GPU timing for the gpu-marked tests of this folder: one way of measuring, for every speed they record."""

import time

import torch


def device_and_host_ms(step, repeats: int = 20, warmup: int = 3) -> tuple[float, float]:
    """(device ms, host ms) per call of `step`: CUDA events around `repeats` calls after `warmup` calls (which
    also compile what is compiled), and the host's time to enqueue them; host >= device means the calls are bound
    by Python, not the GPU."""
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    host_start = time.perf_counter()
    start.record()
    for _ in range(repeats):
        step()
    end.record()
    host_ms = (time.perf_counter() - host_start) * 1e3 / repeats
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeats, host_ms


def device_ms(step, repeats: int = 20, warmup: int = 3) -> float:
    """Device ms per call of `step` (see device_and_host_ms)."""
    return device_and_host_ms(step, repeats, warmup)[0]
