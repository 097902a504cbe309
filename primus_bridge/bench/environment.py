"""What a benchmark ran on: device, driver, library versions and the code revision."""

import os
import platform
import shutil
import subprocess
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

# Library -> distribution names it is published under (the first one installed wins).
LIBRARIES = {
    "torch": ("torch",),
    "transformers": ("transformers",),
    "peft": ("peft",),
    "megatron-core": ("megatron-core", "megatron_core"),
    "megatron-bridge": ("megatron-bridge", "megatron_bridge"),
    "transformer-engine": ("transformer-engine", "transformer_engine", "transformer-engine-torch"),
    "flash-attn": ("flash-attn", "flash_attn"),
    "apex": ("apex",),
    "triton": ("triton", "pytorch-triton-rocm"),
    "accelerate": ("accelerate",),
}
REVISION_ENV = "PRIMUS_BRIDGE_REVISION"
"""Set this where the code was copied without its git folder (e.g. a GPU machine) to record the revision."""


@dataclass
class DeviceInfo:
    """Filled inside a worker process (the harness itself never initialises the GPU)."""

    kind: str  # "cuda" (NVIDIA or ROCm/HIP through torch.cuda) or "cpu"
    name: str
    count: int
    gpu_type: str | None = None
    memory_bytes: int | None = None
    capability: str | None = None
    fp8_matmul_problem: str | None = None
    """Why this device cannot run the FP8 matmuls of precision.fp8_frozen_base (None: it can, or not probed)."""


@dataclass
class Environment:
    device: DeviceInfo
    driver: str | None
    torch_cuda: str | None
    torch_hip: str | None
    python: str
    platform: str
    cpu_count: int
    libraries: dict[str, str | None] = field(default_factory=dict)


def library_versions() -> dict[str, str | None]:
    """Installed version of each library that shapes the numbers; None when absent."""
    versions = {}
    for library, dists in LIBRARIES.items():
        versions[library] = None
        for dist in dists:
            try:
                versions[library] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    return versions


def _command_output(args: list[str]) -> str | None:
    if shutil.which(args[0]) is None:
        return None
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=30, check=True)
    except (subprocess.SubprocessError, OSError):
        return None
    return done.stdout.strip() or None


def driver_version() -> str | None:
    """NVIDIA driver from nvidia-smi, or the amdgpu kernel module's version on ROCm."""
    nvidia = _command_output(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    if nvidia:
        return "nvidia " + nvidia.splitlines()[0].strip()
    amdgpu = Path("/sys/module/amdgpu/version")
    if amdgpu.is_file():
        return "amdgpu " + amdgpu.read_text().strip()
    return None


def git_revision(repo: Path) -> tuple[str | None, bool | None]:
    """(commit, has uncommitted changes) of the code. $PRIMUS_BRIDGE_REVISION, when set, wins: a copy of
    the tree sent to a GPU machine may carry a stale .git or none."""
    if os.environ.get(REVISION_ENV):
        return os.environ[REVISION_ENV], None
    commit = _command_output(["git", "-C", str(repo), "rev-parse", "HEAD"])
    if commit is None:
        return None, None
    status = _command_output(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"])
    return commit, bool(status)


def capture_environment(device: DeviceInfo, repo: Path) -> Environment:
    import torch

    return Environment(
        device=device,
        driver=driver_version() if device.kind == "cuda" else None,
        torch_cuda=torch.version.cuda,
        torch_hip=getattr(torch.version, "hip", None),
        python=platform.python_version(),
        platform=platform.platform(),
        cpu_count=os.cpu_count() or 0,
        libraries=library_versions(),
    )


def cpu_name() -> str:
    """The processor's model name (/proc/cpuinfo on Linux), else the machine type."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def current_device_info() -> DeviceInfo:
    """The device this process trains on (initialises CUDA when a GPU is visible)."""
    import torch

    from ..engine.megatron.fp8_frozen_base import fp8_matmul_problem
    from ..hardware import gpu_type_from_name, visible_gpu_count

    count = visible_gpu_count()
    if not count:
        return DeviceInfo(kind="cpu", name=cpu_name(), count=0, fp8_matmul_problem=fp8_matmul_problem())
    props = torch.cuda.get_device_properties(0)
    return DeviceInfo(kind="cuda", name=props.name, count=count, gpu_type=gpu_type_from_name(props.name),
                      memory_bytes=props.total_memory, capability=f"{props.major}.{props.minor}",
                      fp8_matmul_problem=fp8_matmul_problem(torch.device("cuda", 0)))
