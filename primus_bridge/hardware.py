"""The GPU types the project knows (one table: recipes, planner and benchmarks read it), and what this process sees."""

import os
from dataclasses import dataclass

GIB = 1024**3


@dataclass(frozen=True)
class GpuType:
    """One GPU type (SXM / OAM part)."""

    key: str
    """How recipes, --gpu and the planner name it."""
    name_fragments: tuple[str, ...]
    """Fragments of the device name torch reports ('NVIDIA H200', 'AMD Instinct MI300X')."""
    memory_gb: int
    """Marketing memory size in GB: the tier key of the recipes' tuning tables."""
    memory_gib: float
    """Memory the driver reports as total (a little under the marketing size for NVIDIA parts)."""
    bf16_tflops: float
    """Dense (no sparsity) bf16 tensor-core TFLOP/s from the vendor's data sheet."""

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_gib * GIB)


GPU_TYPES = {gpu.key: gpu for gpu in (
    GpuType("mi300x", ("MI300X",), 192, 191.5, 1307.4),
    GpuType("mi325x", ("MI325X",), 256, 255.5, 1307.4),
    GpuType("mi355x", ("MI355X", "MI350X"), 288, 287.5, 2516.6),
    GpuType("h100", ("H100",), 80, 79.1, 989.4),
    GpuType("h200", ("H200",), 141, 139.7, 989.4),
    GpuType("b200", ("B200",), 180, 178.0, 2250.0),
)}


def gpu_type(key: str) -> GpuType:
    """The GPU type called `key`; ValueError naming --gpu and the known types."""
    if key not in GPU_TYPES:
        raise ValueError(f"gpu {key!r} is not a known GPU type; use --gpu with one of {', '.join(GPU_TYPES)}")
    return GPU_TYPES[key]


def gpu_type_from_name(device_name: str) -> str | None:
    """'NVIDIA H200' -> 'h200'; 'AMD Instinct MI300X' -> 'mi300x'; unknown -> None."""
    upper = device_name.upper()
    for key, gpu in GPU_TYPES.items():
        if any(fragment in upper for fragment in gpu.name_fragments):
            return key
    return None


def visible_gpu_count() -> int:
    """GPUs torch can use here (0 without torch or without a GPU)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "" or os.environ.get("HIP_VISIBLE_DEVICES", None) == "":
        return 0
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def detect_gpu_type() -> str | None:
    """The recipe key of GPU 0, or None when no known GPU is visible."""
    if not visible_gpu_count():
        return None
    import torch

    return gpu_type_from_name(torch.cuda.get_device_name(0))
