"""GPU timing for the gpu-marked tests of this folder: one way of measuring, for every speed they record."""

import time

import torch

HOLD_MARGIN = 1.5
"""The GPU is held back for this many times the host's measured enqueue time (see device_and_host_ms)."""


def _sleep_cycles_per_ms() -> float:
    """How many cycles of `torch.cuda._sleep` take one millisecond on this GPU."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    cycles = 10_000_000
    start.record()
    torch.cuda._sleep(cycles)
    end.record()
    torch.cuda.synchronize()
    return cycles / start.elapsed_time(end)


def device_and_host_ms(step, repeats: int = 20, warmup: int = 3) -> tuple[float, float]:
    """(device ms, host ms) per call of `step`, after `warmup` calls (which also compile what is compiled).

    host: the time to enqueue `repeats` calls. device: CUDA events around `repeats` calls queued behind a sleep
    kernel longer than that enqueue time, so that the GPU runs them back to back and the events time the kernels,
    not the gaps of a host that launches slower than the GPU runs (host >= device: a step of such calls is bound
    by Python, not the GPU)."""
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    host_start = time.perf_counter()
    for _ in range(repeats):
        step()
    host_ms = (time.perf_counter() - host_start) * 1e3
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda._sleep(int(host_ms * HOLD_MARGIN * _sleep_cycles_per_ms()))
    start.record()
    for _ in range(repeats):
        step()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeats, host_ms / repeats


def device_ms(step, repeats: int = 20, warmup: int = 3) -> float:
    """Device ms per call of `step` (see device_and_host_ms)."""
    return device_and_host_ms(step, repeats, warmup)[0]
