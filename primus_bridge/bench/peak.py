"""Matmul ceilings: the vendor's datasheet number and one measured on this device in this run.

MFU is reported against both: the datasheet peak is what vendors and papers quote; the measured
one (a large bf16 matmul on random data, the same library path training uses) is what this GPU,
at its clocks and power limit, can really reach.
"""

import statistics
import time
from dataclasses import dataclass

# Dense (no sparsity) bf16 tensor-core TFLOP/s per GPU from the vendors' datasheets (SXM/OAM parts).
DATASHEET_BF16_TFLOPS = {
    "h100": 989.4,
    "h200": 989.4,
    "b200": 2250.0,
    "mi300x": 1307.4,
    "mi325x": 1307.4,
    "mi355x": 2516.6,
}


def datasheet_peak_tflops(gpu_type: str | None, dtype: str) -> float | None:
    """Datasheet dense peak for bf16 on a known GPU; None on CPU, unknown GPUs and other dtypes."""
    if gpu_type is None or dtype != "bf16":
        return None
    return DATASHEET_BF16_TFLOPS.get(gpu_type)


@dataclass(frozen=True)
class MatmulPeak:
    device: str
    dtype: str
    size: int
    repeats: int
    tflops_median: float
    tflops_max: float


def _time_gpu(torch, run, repeats: int) -> list[float]:
    """Seconds per call from CUDA events (device work is asynchronous)."""
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1000.0)
    return times


def _time_cpu(run, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def _warm_up(run, synchronize, seconds: float) -> None:
    """Run until `seconds` have passed, so clocks, caches and library handles are settled before timing."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        run()
        synchronize()


def measure_matmul_peak(device: str, dtype: str, size: int, repeats: int, warmup_s: float = 2.0) -> MatmulPeak:
    """TFLOP/s of size x size x size matmuls on random data (never zeros: they run faster than real data)."""
    import torch

    torch_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype]
    generator = torch.Generator(device=device).manual_seed(0)
    inputs = [torch.randn(size, size, device=device, dtype=torch_dtype, generator=generator) for _ in range(3)]
    outputs = torch.empty(size, size, device=device, dtype=torch_dtype)
    calls = iter(range(10**9))

    def run() -> None:
        i = next(calls)
        torch.matmul(inputs[i % 3], inputs[(i + 1) % 3], out=outputs)

    on_gpu = device.startswith("cuda")
    _warm_up(run, torch.cuda.synchronize if on_gpu else (lambda: None), warmup_s)
    times = _time_gpu(torch, run, repeats) if on_gpu else _time_cpu(run, repeats)
    flops = 2.0 * size**3
    return MatmulPeak(device, dtype, size, repeats, flops / statistics.median(times) / 1e12, flops / min(times) / 1e12)
