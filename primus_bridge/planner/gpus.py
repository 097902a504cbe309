"""The numbers the planner needs per GPU type: usable memory, and the benchmarks' dense bf16 peak."""

from dataclasses import dataclass

from ..bench.peak import DATASHEET_BF16_TFLOPS
from ..hardware import GPU_TYPES

GIB = 1024**3


@dataclass(frozen=True)
class GpuSpec:
    name: str
    memory_gib: float
    """Memory the driver reports as total (a little under the marketing size for NVIDIA parts)."""

    @property
    def bf16_tflops(self) -> float:
        """Dense (no sparsity) bf16 matrix peak, from the vendor's data sheet."""
        return DATASHEET_BF16_TFLOPS[self.name]

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_gib * GIB)


GPU_SPECS = {
    "mi300x": GpuSpec("mi300x", 191.5),
    "mi325x": GpuSpec("mi325x", 255.5),
    "mi355x": GpuSpec("mi355x", 287.5),
    "h100": GpuSpec("h100", 79.1),
    "h200": GpuSpec("h200", 139.7),
    "b200": GpuSpec("b200", 178.0),
}


def gpu_spec(gpu: str) -> GpuSpec:
    """The spec of a GPU type; ValueError naming --gpu and the valid types."""
    if gpu not in GPU_SPECS:
        raise ValueError(f"gpu {gpu!r} is not a known GPU type; use --gpu with one of {', '.join(GPU_TYPES)}")
    return GPU_SPECS[gpu]
