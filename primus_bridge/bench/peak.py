"""Matmul ceilings: the vendor's datasheet number and one measured on this device in this run.

MFU is reported against both: the datasheet peak is what vendors and papers quote; the measured one is what
this GPU, at its clocks and power limit, really reaches on the library path training uses. A single square
shape under-reads it (one 8192^3 bf16 matmul read 639 TFLOP/s on an H200 whose 8B-model linears ran at up
to 796), so the measured peak is the best median over several shapes -- squares and the model's own linear
layers -- each timed after the clocks are warmed.
"""

import statistics
import time
from dataclasses import dataclass

from ..hardware import GPU_TYPES


def datasheet_peak_tflops(gpu_type: str | None, dtype: str) -> float | None:
    """Datasheet dense peak for bf16 on a known GPU; None on CPU, unknown GPUs and other dtypes."""
    if gpu_type not in GPU_TYPES or dtype != "bf16":
        return None
    return GPU_TYPES[gpu_type].bf16_tflops


Shape = tuple[int, int, int]
"""(m, n, k): an (m x k) @ (k x n) matmul."""


@dataclass(frozen=True)
class MatmulPeak:
    device: str
    dtype: str
    size: int
    """Largest side of the best shape (records made before shapes were measured: the one square's side)."""
    repeats: int
    tflops_median: float
    """The peak: the best shape's median TFLOP/s."""
    tflops_max: float
    """The best shape's fastest single call."""
    best_shape: Shape | None = None
    per_shape: tuple[tuple[Shape, float], ...] = ()
    """Each measured shape with its median TFLOP/s."""
    warmup_s: float = 0.0

    @classmethod
    def from_record(cls, record: dict) -> "MatmulPeak":
        """Back from its JSON form, where the shapes became lists."""
        shape = record.get("best_shape")
        return cls(**{**record, "best_shape": tuple(shape) if shape else None,
                      "per_shape": tuple((tuple(item), tflops) for item, tflops in record.get("per_shape", ()))})

    def describe(self) -> str:
        if not self.per_shape:
            return f"{self.dtype} {self.size}x{self.size}x{self.size} matmul on random data"
        shapes = ", ".join(f"{m}x{n}x{k} {tflops:,.4g}" for (m, n, k), tflops in self.per_shape)
        return (f"best median of {len(self.per_shape)} {self.dtype} matmul shapes (m x n x k) on random data "
                f"after {self.warmup_s:g} s of warm-up ({shapes} TFLOP/s)")


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


def _shape_tflops(torch, device: str, torch_dtype, shape: Shape, repeats: int, warmup_s: float
                  ) -> tuple[float, float]:
    """Median and best TFLOP/s of one shape, three input pairs in rotation (never zeros: they run faster)."""
    m, n, k = shape
    generator = torch.Generator(device=device).manual_seed(0)
    lefts = [torch.randn(m, k, device=device, dtype=torch_dtype, generator=generator) for _ in range(3)]
    rights = [torch.randn(k, n, device=device, dtype=torch_dtype, generator=generator) for _ in range(3)]
    outputs = torch.empty(m, n, device=device, dtype=torch_dtype)
    calls = iter(range(10**9))

    def run() -> None:
        i = next(calls)
        torch.matmul(lefts[i % 3], rights[(i + 1) % 3], out=outputs)

    on_gpu = device.startswith("cuda")
    _warm_up(run, torch.cuda.synchronize if on_gpu else (lambda: None), warmup_s)
    times = _time_gpu(torch, run, repeats) if on_gpu else _time_cpu(run, repeats)
    flops = 2.0 * m * n * k
    return flops / statistics.median(times) / 1e12, flops / min(times) / 1e12


def measure_matmul_peak(device: str, dtype: str, shapes: list[Shape], repeats: int, warmup_s: float = 2.0
                        ) -> MatmulPeak:
    """The best median TFLOP/s over `shapes`: `warmup_s` of matmuls on the first shape settles the clocks,
    then each shape gets a short warm-up of its own before `repeats` timed calls."""
    import torch

    torch_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype]
    measured = []
    for index, shape in enumerate(shapes):
        shape_warmup = warmup_s if index == 0 else min(warmup_s, 0.5)
        measured.append((tuple(shape), *_shape_tflops(torch, device, torch_dtype, tuple(shape), repeats,
                                                      shape_warmup)))
    best_shape, median, best = max(measured, key=lambda row: row[1])
    return MatmulPeak(device, dtype, max(best_shape), repeats, median, best, best_shape,
                      tuple((shape, tflops) for shape, tflops, _ in measured), warmup_s)
