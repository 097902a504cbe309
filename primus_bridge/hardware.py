"""What accelerator this process sees, named the way recipes and the planner name GPU types."""

import os

GPU_TYPES = {  # key -> (marketing-name fragments, memory in GB)
    "mi300x": (("MI300X",), 192),
    "mi325x": (("MI325X",), 256),
    "mi355x": (("MI355X", "MI350X"), 288),
    "h100": (("H100",), 80),
    "h200": (("H200",), 141),
    "b200": (("B200",), 180),
}


def gpu_type_from_name(device_name: str) -> str | None:
    """'NVIDIA H200' -> 'h200'; 'AMD Instinct MI300X' -> 'mi300x'; unknown -> None."""
    upper = device_name.upper()
    for key, (fragments, _) in GPU_TYPES.items():
        if any(fragment in upper for fragment in fragments):
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
