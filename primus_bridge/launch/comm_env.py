"""RCCL / NCCL environment defaults. A variable you set yourself is never changed.

Both GPU vendors:
  NCCL_IB_HCA                      the InfiniBand / RoCE devices with an ACTIVE port in /sys/class/infiniband
  NCCL_SOCKET_IFNAME, GLOO_SOCKET_IFNAME
                                   the interface given by --socket-ifname (or your NCCL_SOCKET_IFNAME, copied
                                   to GLOO_SOCKET_IFNAME) for bootstrap and gloo traffic
  NCCL_DEBUG=WARN                  communicator failures print their cause instead of a bare timeout
  CUDA_DEVICE_MAX_CONNECTIONS=1    Megatron-Core needs kernels issued in order for TP/SP communication overlap
  TORCH_NCCL_AVOID_RECORD_STREAMS=1
                                   collective buffers are freed without recordStream: lower peak memory
ROCm (RCCL) only:
  HSA_NO_SCRATCH_RECLAIM=1         keep kernel scratch memory allocated; reclaiming it stalls MI300-class GPUs
  HIP_FORCE_DEV_KERNARG=1          kernel arguments in device memory: lower launch latency
  TORCH_NCCL_HIGH_PRIORITY=1       RCCL on high-priority streams so communication overlaps compute
"""

from dataclasses import dataclass
from pathlib import Path

from .topology import Env

INFINIBAND_ROOT = Path("/sys/class/infiniband")
VENDORS = ("rocm", "cuda", "none")

COMMON_DEFAULTS = (
    ("NCCL_DEBUG", "WARN", "communicator failures print their cause"),
    ("CUDA_DEVICE_MAX_CONNECTIONS", "1", "Megatron-Core TP/SP communication overlap needs in-order kernels"),
    ("TORCH_NCCL_AVOID_RECORD_STREAMS", "1", "free collective buffers without recordStream (lower peak memory)"),
)
ROCM_DEFAULTS = (
    ("HSA_NO_SCRATCH_RECLAIM", "1", "ROCm: reclaiming kernel scratch memory stalls MI300-class GPUs"),
    ("HIP_FORCE_DEV_KERNARG", "1", "ROCm: kernel arguments in device memory (lower launch latency)"),
    ("TORCH_NCCL_HIGH_PRIORITY", "1", "ROCm: RCCL on high-priority streams overlaps compute"),
)


@dataclass(frozen=True)
class EnvSetting:
    name: str
    value: str
    reason: str
    """Why the launcher sets it, or 'set by you' for a value that was already in the environment."""
    chosen_by_user: bool = False


def gpu_vendor() -> str:
    """'rocm' or 'cuda' from the installed torch build; 'none' for a CPU-only build."""
    import torch

    if getattr(torch.version, "hip", None):
        return "rocm"
    return "cuda" if torch.version.cuda else "none"


def active_ib_devices(root: Path = INFINIBAND_ROOT) -> list[str]:
    """Names of RDMA devices with at least one port in state ACTIVE, sorted."""
    if not root.is_dir():
        return []
    return sorted(dev.name for dev in root.iterdir() if _has_active_port(dev))


def _has_active_port(device: Path) -> bool:
    for state in device.glob("ports/*/state"):
        try:
            if "ACTIVE" in state.read_text():
                return True
        except OSError:
            continue
    return False


def comm_settings(env: Env, vendor: str, socket_ifname: str | None,
                  ib_root: Path = INFINIBAND_ROOT) -> list[EnvSetting]:
    """Every variable the launcher applies for `vendor`, with its value and the reason."""
    wanted: list[tuple[str, str, str]] = []
    if vendor != "none":
        wanted += COMMON_DEFAULTS
        devices = active_ib_devices(ib_root)
        if devices:
            wanted.append(("NCCL_IB_HCA", ",".join(devices), f"active RDMA devices in {ib_root}"))
    if vendor == "rocm":
        wanted += ROCM_DEFAULTS
    settings = [_keep_user_value(env, name, value, reason) for name, value, reason in wanted]
    return settings + _socket_settings(env, socket_ifname)


def _socket_settings(env: Env, socket_ifname: str | None) -> list[EnvSetting]:
    """--socket-ifname sets both variables; a user's NCCL_SOCKET_IFNAME is copied to gloo unless it has its own."""
    if socket_ifname:
        return [EnvSetting(name, socket_ifname, "from --socket-ifname", chosen_by_user=True)
                for name in ("NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME")]
    if not env.get("NCCL_SOCKET_IFNAME"):
        return []
    ifname = env["NCCL_SOCKET_IFNAME"]
    return [_keep_user_value(env, "NCCL_SOCKET_IFNAME", ifname, ""),
            _keep_user_value(env, "GLOO_SOCKET_IFNAME", ifname, "same interface as NCCL_SOCKET_IFNAME")]


def _keep_user_value(env: Env, name: str, value: str, reason: str) -> EnvSetting:
    if name in env:
        return EnvSetting(name, env[name], "set by you", chosen_by_user=True)
    return EnvSetting(name, value, reason)
