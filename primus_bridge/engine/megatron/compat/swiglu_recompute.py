"""Recompute the MLP's SwiGLU output in the backward instead of keeping it.

Why: in a Llama MLP the SwiGLU output (the FC2 input, f bf16 values per token) is kept only for FC2's
backward: its weight gradient in full fine-tuning, its LoRA adapter's gradient under LoRA. Megatron-Core's
fused `SwiGLUFunction` already keeps its own input (the FC1 output), so the output can be rebuilt from it
with the same kernel when FC2's backward needs it: one element-wise kernel a layer instead of 2f bytes
per token a layer (Llama-3-8B at 4,096 tokens: 3.5 GiB). Megatron-Core 0.19 offers this for MoE
experts only (`recompute_modules: [moe_act]`).

How: while an MLP runs its forward, a saved-tensor hook swaps every tensor the autograd graph would keep
that is (a view of) a `SwiGLUFunction` output for a recipe: the function's backward node, which holds
the input. Unpacking runs the same fused `swiglu` on that input, so the values are bit for bit those of
the forward. Anything else is kept as usual; an FP8-stored input (`activation_func_fp8_input_store`) is
left alone. Registry entry `swiglu_recompute` (model phase): the registry verifies its targets when the
process starts; `use_swiglu_recompute` (a Megatron-Bridge pre-wrap hook, registered by container.py with
`activation_checkpointing.recompute_mlp_activation`, the default) installs it on each model.
"""

import functools
from dataclasses import dataclass

import torch
from megatron.core.fusions.fused_bias_swiglu import swiglu
from megatron.core.transformer.mlp import MLP

from .marker import installed_by, mark

ENTRY = "swiglu_recompute"
_NODE_NAME = "SwiGLUFunctionBackward"


@dataclass
class SwiGLURecipe:
    """How to rebuild a kept view of a SwiGLU output: the output's backward node and the view's geometry."""

    node: object
    size: torch.Size
    stride: tuple[int, ...]
    offset: int

    def rebuild(self) -> torch.Tensor:
        with torch.no_grad():
            output = swiglu(self.node.saved_tensors[0])
        return output.as_strided(self.size, self.stride, self.offset)


def _swiglu_node(tensor: torch.Tensor):
    """The SwiGLUFunction backward node that produced `tensor` (or the tensor it views), else None."""
    base = tensor._base if tensor._base is not None else tensor
    node = base.grad_fn
    if node is None or type(node).__name__ != _NODE_NAME or getattr(node, "fp8_input_store", True):
        return None
    return node


def pack(tensor: torch.Tensor):
    node = _swiglu_node(tensor)
    if node is None:
        return tensor
    return SwiGLURecipe(node, tensor.size(), tensor.stride(), tensor.storage_offset())


def unpack(saved):
    return saved.rebuild() if isinstance(saved, SwiGLURecipe) else saved


def _forward_keeping_swiglu_input_only(forward, *args, **kwargs):
    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        return forward(*args, **kwargs)


def use_swiglu_recompute(model: list) -> list:
    """Megatron-Bridge pre-wrap hook: every dense MLP (not MoE experts) of every chunk recomputes its
    SwiGLU output in the backward."""
    for chunk in model:
        for module in chunk.modules():
            if type(module) is MLP and installed_by(module.forward) != ENTRY:
                forward = functools.partial(_forward_keeping_swiglu_input_only, module.forward)
                module.forward = mark(forward, ENTRY, module.forward)
    return model
