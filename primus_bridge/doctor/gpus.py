"""The GPUs torch can use here: how many, which model, how much memory."""

import os
from collections import Counter

from ..hardware import GIB, GPU_TYPES, gpu_type_from_name
from .report import Check, Status

DEVICE_FIX = {
    "rocm": "run on a GPU node; in a container pass --device=/dev/kfd --device=/dev/dri --group-add video "
            "(Kubernetes: request amd.com/gpu); check the host with amd-smi",
    "cuda": "run on a GPU node; in a container pass --gpus all (Kubernetes: request nvidia.com/gpu); "
            "check the host with nvidia-smi",
}
MASKS = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES")


def _masked(environ) -> str:
    """' (CUDA_VISIBLE_DEVICES is empty)' when a visibility variable hides every GPU."""
    empty = [name for name in MASKS if environ.get(name) == ""]
    return f" ({', '.join(empty)} {'is' if len(empty) == 1 else 'are'} empty)" if empty else ""


def _devices() -> list[tuple[str, int]]:
    import torch

    return [(torch.cuda.get_device_name(i), torch.cuda.get_device_properties(i).total_memory)
            for i in range(torch.cuda.device_count())]


def describe(devices: list[tuple[str, int]]) -> str:
    """'8 x AMD Instinct MI300X (192 GiB)'; mixed models are listed one group after another."""
    groups = Counter((name, round(memory / GIB)) for name, memory in devices)
    return ", ".join(f"{count} x {name} ({gib} GiB)" for (name, gib), count in groups.items())


def gpu_checks(platform: str, environ=os.environ) -> list[Check]:
    if platform == "cpu":
        return [Check("gpu", Status.FAIL, "no GPU: torch is a CPU-only build, so no ROCm or CUDA device can be used",
                      "run in the primus-bridge image on a GPU node (make image-rocm / make image-cuda)")]
    import torch

    if not torch.cuda.is_available() or torch.cuda.device_count() == 0:
        build = f"torch {torch.__version__}, {platform.upper()} {torch.version.hip or torch.version.cuda} build"
        return [Check("gpu", Status.FAIL, f"no GPU visible: torch.cuda.is_available() is False ({build})"
                      f"{_masked(environ)}", DEVICE_FIX[platform])]
    return model_checks(_devices())


def model_checks(devices: list[tuple[str, int]]) -> list[Check]:
    """Pass with the inventory; warn on mixed models or a model the recipes do not know."""
    checks = [Check("gpu", Status.PASS, describe(devices))]
    names = sorted({name for name, _ in devices})
    if len(names) > 1:
        checks.append(Check("gpu-models", Status.WARN, f"mixed GPU models: {', '.join(names)}",
                            "hide the odd ones (HIP_VISIBLE_DEVICES / CUDA_VISIBLE_DEVICES): "
                            "every rank runs at the pace of the slowest GPU"))
    unknown = [name for name in names if gpu_type_from_name(name) is None]
    if unknown:
        checks.append(Check("gpu-type", Status.WARN, f"{', '.join(unknown)} is not a GPU type the recipes know "
                            f"({', '.join(GPU_TYPES)})", "pass --gpu TYPE to choose the recipe settings"))
    return checks
