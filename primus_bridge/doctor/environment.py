"""The RCCL/NCCL environment and the variables the images set: what is set, and settings known to hurt."""

from collections.abc import Mapping

from .report import Check, Status

COMM_PREFIXES = ("NCCL_", "RCCL_", "TORCH_NCCL_", "GLOO_", "UCX_")
# (variable, values that hurt, what happens, fix)
RISKY = (
    ("NCCL_DEBUG", {"INFO", "TRACE"}, "every rank logs each collective set-up: slow start, huge logs",
     "unset NCCL_DEBUG (or set WARN) outside a debugging session"),
    ("NCCL_P2P_DISABLE", {"1"}, "GPU peer-to-peer transfers inside a node are off: collectives slow down",
     "unset NCCL_P2P_DISABLE unless it works around a known hardware fault"),
    ("NCCL_SHM_DISABLE", {"1"}, "shared-memory transport inside a node is off: collectives slow down",
     "unset NCCL_SHM_DISABLE unless it works around a known fault"),
    ("NCCL_IB_DISABLE", {"1"}, "InfiniBand/RoCE is off: traffic between nodes falls back to TCP sockets",
     "unset NCCL_IB_DISABLE on clusters with InfiniBand or RoCE"),
)


def comm_environment(environ: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in sorted(environ.items()) if name.startswith(COMM_PREFIXES)}


def environment_checks(environ: Mapping[str, str]) -> list[Check]:
    """One pass listing the RCCL/NCCL variables, then one warning per harmful setting."""
    settings = comm_environment(environ)
    listed = " ".join(f"{k}={v}" for k, v in settings.items()) or "no NCCL_/RCCL_ variables set (library defaults)"
    checks = [Check("comm-env", Status.PASS, listed)]
    for name, bad, effect, fix in RISKY:
        if environ.get(name, "").upper() in bad:
            checks.append(Check(f"env {name}", Status.WARN, f"{name}={environ[name]}: {effect}", fix))
    connections = environ.get("CUDA_DEVICE_MAX_CONNECTIONS")
    if connections != "1":
        checks.append(Check("env CUDA_DEVICE_MAX_CONNECTIONS", Status.WARN,
                            f"CUDA_DEVICE_MAX_CONNECTIONS={connections or '(unset)'}: Megatron-Core's tensor- and "
                            "sequence-parallel communication overlap needs one device work queue",
                            "export CUDA_DEVICE_MAX_CONNECTIONS=1 (the primus-bridge images set it)"))
    return checks
