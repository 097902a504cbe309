"""LoRA adapters on one tensor-parallel rank: the low-rank pair as two plain matmuls.

Why this module exists: Megatron-Bridge's `ParallelLinearAdapter` runs A and B through Megatron-Core's
`ColumnParallelLinear`/`RowParallelLinear`, each a Python autograd Function with tensor-parallel,
sequence-parallel, gradient-fusion and offload branches, plus the adapter's own eligibility checks. With
one tensor-parallel rank and no gradient-accumulation fusion none of those branches does anything, but
their host time remains: four adapters per layer, forward and backward, on every micro batch. On the
H200 the 8B LoRA case at 4,096-token micro batches kept the GPU busy only two thirds of each step.

`adapter_forward` computes exactly what the adapter computes on that path, dropout(x) @ A^T @ B^T *
alpha / dim, with `F.linear` on the same weights, so autograd's C++ engine runs the backward. Gradients
still reach Megatron's DDP through `param.grad` (its hooks add them to the main-grad buffer), as they
do when Megatron-Core's linear layers run without gradient-accumulation fusion. Any other
configuration (tensor parallelism, experts, all-to-all, fused wgrad, activation offload, sequence-
parallel input re-gather) runs Megatron-Bridge's forward unchanged.

Applied only by calling `use_lora_fast_path()` (runtime.prepare_megatron does).
"""

import torch
import torch.nn.functional as F

from .library_patch import wrap_once

_SIMPLE = "_primus_simple_path"


def is_simple(adapter) -> bool:
    """True when Megatron's parallel linear layers reduce to plain matmuls for this adapter (cached)."""
    cached = getattr(adapter, _SIMPLE, None)
    if cached is None:
        from megatron.bridge.peft.utils import _process_group_size

        config = adapter.config
        cached = (
            _process_group_size(adapter.tp_group, config.tensor_model_parallel_size or 1) == 1
            and not adapter.is_expert
            and not adapter.use_a2a
            and not adapter.sequence_parallel_input_regather
            and not getattr(config, "gradient_accumulation_fusion", False)
            and not (config.cpu_offloading and config.cpu_offloading_activations)
            and all(getattr(layer, "bias", None) is None for layer in (adapter.linear_in, adapter.linear_out))
        )
        setattr(adapter, _SIMPLE, cached)
    return cached


def adapter_forward(adapter, x: torch.Tensor) -> torch.Tensor:
    """The adapter's output on one tensor-parallel rank: same weights, same order of operations."""
    if adapter.dropout_position == "pre":
        x = adapter.dropout(x)
    x = adapter.activation(F.linear(x, adapter.linear_in.weight))
    x = F.linear(x, adapter.linear_out.weight)
    if adapter.dropout_position == "post":
        x = adapter.dropout(x)
    return x * (adapter.alpha / adapter.dim)


def use_lora_fast_path() -> None:
    """Route eligible adapters' forward through `adapter_forward` (idempotent; after Megatron-Bridge's import)."""
    from megatron.bridge.peft.utils import ParallelLinearAdapter

    def make(library_forward):
        def forward(self, x, *args, **kwargs):
            if is_simple(self):
                return adapter_forward(self, x)
            return library_forward(self, x, *args, **kwargs)

        forward.__doc__ = adapter_forward.__doc__
        return forward

    wrap_once(ParallelLinearAdapter, "forward", make)
