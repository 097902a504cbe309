"""Megatron-Core's stand-ins for apex's multi-tensor kernels, without a device sync per tensor.

Without TransformerEngine or apex, Megatron-Core computes the gradient norm with
`utils.local_multi_tensor_l2_norm`, which turns every tensor's norm into a Python float: one device
sync per trainable tensor and step (256 for Llama-3-8B LoRA on all linear layers), each leaving the
GPU idle while the host catches up. Its `local_multi_tensor_scale` scales and copies tensors one at a
time (every step, when the optimizer copies its main parameters into the model's). The replacements
compute the same values with torch's foreach kernels: no sync, a few launches.

Registry entry `sync_free_grad_norm`, installed by `use_foreach_kernels()`. Megatron binds each fallback
under several names; the registry verifies that every binding below still holds the fallback (a binding
that moved or vanished is an error, not a skip). With TE or apex installed their fused kernels stay and the
entry does not apply.
"""

import importlib
import importlib.util

import torch

from .marker import installed_by, mark

ENTRY = "sync_free_grad_norm"
L2_NORM_BINDINGS = (("megatron.core.utils", "local_multi_tensor_l2_norm"),
                     ("megatron.core.optimizer.clip_grads", "l2_norm_impl"),
                     ("megatron.bridge.training.utils.train_utils", "multi_tensor_l2norm"))
SCALE_BINDINGS = (("megatron.core.utils", "local_multi_tensor_scale"),
                   ("megatron.core.optimizer.clip_grads", "multi_tensor_scale_impl"),
                   ("megatron.core.optimizer.optimizer", "multi_tensor_scale_impl"))


def foreach_l2_norm(chunk_size, noop_flag, tensor_lists, per_tensor, *args):
    """The l2 norm over every tensor of `tensor_lists`, as a [1] fp32 tensor on their device (no host read)."""
    tensors = [tensor for tensor_list in tensor_lists for tensor in tensor_list]
    if not tensors:
        device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else None
        return torch.zeros(1, dtype=torch.float, device=device), None
    norms = torch.stack([norm.to(torch.float) for norm in torch._foreach_norm(tensors)])
    return torch.linalg.vector_norm(norms).reshape(1), None


def foreach_scale(chunk_size, noop_flag, tensor_lists, scale) -> None:
    """targets[i] = sources[i] * scale, computed in the source's dtype as Megatron-Core's loop does."""
    sources, targets = tensor_lists[0], tensor_lists[1]
    if not sources:
        return
    if all(source is target for source, target in zip(sources, targets)):
        torch._foreach_mul_(targets, scale)
    else:
        torch._foreach_copy_(targets, torch._foreach_mul(sources, scale))


def not_applicable() -> str | None:
    """Why the entry does not apply here, or None. Megatron binds TE's or apex's fused kernels where either is
    installed; then no binding holds the fallback. Otherwise every binding must (the registry checks it)."""
    if importlib.util.find_spec("transformer_engine") or importlib.util.find_spec("amp_C"):
        return "TransformerEngine or apex installed: their fused multi-tensor kernels are bound"
    return None


def _rebind(bindings, replacement) -> None:
    for module_name, attribute in bindings:
        module = importlib.import_module(module_name)
        current = getattr(module, attribute)
        if installed_by(current) != ENTRY:
            setattr(module, attribute, mark(replacement, ENTRY, current))


def use_foreach_kernels() -> None:
    """Replace Megatron-Core's local fallbacks at every binding (idempotent)."""
    if not_applicable():
        return
    _rebind(L2_NORM_BINDINGS, foreach_l2_norm)
    _rebind(SCALE_BINDINGS, foreach_scale)
