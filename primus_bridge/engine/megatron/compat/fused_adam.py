"""torch's fused AdamW kernel for Megatron-Core's torch-Adam fallback, on the GPU.

Why this module exists: without apex or TransformerEngine, Megatron-Core 0.19.2 builds `torch.optim.AdamW` (or
`Adam`) with torch's defaults, which on a GPU run the foreach implementation: about a dozen multi-tensor passes
a step over every fp32 main parameter, gradient and moment, each reading and writing whole tensors. A
Llama-3.2-3B full-SFT step on an H100 spent 85 ms of its 1.42 s of GPU time there. torch's fused implementation
(`fused=True`) makes the same update (fp32, the same formula) in one pass per tensor chunk, as apex's and TE's
FusedAdam do where they are installed.

`use_fused_adam()` wraps `_get_megatron_optimizer_based_on_param_groups`: the optimizer it returns is built as
before, then its inner torch Adam / AdamW is switched to the fused kernel (`fuse`) when every parameter it
updates is a floating-point tensor on a GPU (CUDA or ROCm). torch's `step` reads `fused` and `foreach` from each
param group; the constructor's one other fused setting, `_step_supports_amp_scaling`, is set too.

Checkpoints: torch keeps the flags in the param groups it saves, and loading takes them from the file. A
checkpoint written with the fused kernel resumes on it (torch moves each parameter's 'step' counter to the
parameter's device, as the fused kernel needs); one written before this entry resumes on the foreach path, the
same update unfused. (How DistributedOptimizer saves and loads the counters is fingerprinted by the
`optimizer_resume` entry, which adapts them.)

Registry entry `fused_adam`, not applicable where apex or TE provide Megatron-Core's Adam.
"""

import torch
from megatron.core import optimizer as megatron_optimizer

from .marker import replace_once

ENTRY = "fused_adam"
_REPLACED = "_get_megatron_optimizer_based_on_param_groups"
FUSED_DEVICE_TYPES = ("cuda",)
"""Where the product switches to the fused kernel (ROCm devices are "cuda" to torch)."""


def not_applicable() -> str | None:
    """Why the entry does not apply here, or None."""
    if not megatron_optimizer.USING_PYTORCH_OPTIMIZER:
        return "apex or TransformerEngine installed: Megatron-Core's Adam is their FusedAdam"
    return None


def fuse(optimizer: torch.optim.Optimizer, device_types: tuple[str, ...] | None = None) -> bool:
    """Switch a torch Adam / AdamW, not stepped yet, to the fused kernel when every parameter is a floating tensor on
    one of `device_types` (default FUSED_DEVICE_TYPES); returns whether it did."""
    device_types = device_types or FUSED_DEVICE_TYPES
    if not isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)) or optimizer.state:
        return False
    params = [param for group in optimizer.param_groups for param in group["params"]]
    if not params or any(not torch.is_floating_point(p) or p.device.type not in device_types for p in params):
        return False
    if any(group.get("differentiable") for group in optimizer.param_groups):
        return False
    for settings in (optimizer.defaults, *optimizer.param_groups):
        settings["fused"], settings["foreach"] = True, False
    optimizer._step_supports_amp_scaling = True
    return True


def inner_optimizers(built) -> list:
    """The torch optimizers inside what Megatron-Core built (a MegatronOptimizer, a chain of them, or None)."""
    if built is None or isinstance(built, tuple):  # skip_megatron_wrapping: (torch optimizer, init function)
        return [built[0]] if isinstance(built, tuple) else []
    chain = getattr(built, "chained_optimizers", None) or [built]
    return [getattr(part, "optimizer", None) for part in chain]


def use_fused_adam() -> None:
    """Build Megatron-Core's optimizers with torch's fused Adam where it applies (idempotent)."""
    if not_applicable():
        return

    def make(original):
        def with_fused_adam(*args, **kwargs):
            built = original(*args, **kwargs)
            for inner in inner_optimizers(built):
                if inner is not None:
                    fuse(inner)
            return built

        with_fused_adam.__doc__ = original.__doc__
        return with_fused_adam

    replace_once(ENTRY, megatron_optimizer, _REPLACED, make)
