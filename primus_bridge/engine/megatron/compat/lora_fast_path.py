"""LoRA adapters on one tensor-parallel rank: the low-rank pairs as plain matmuls, a fused layer's in one.

Why this module exists: Megatron-Bridge's `ParallelLinearAdapter` runs A and B through Megatron-Core's
`ColumnParallelLinear`/`RowParallelLinear`, each a Python autograd Function with tensor-parallel,
sequence-parallel, gradient-fusion and offload branches, plus the adapter's own eligibility checks. With
one tensor-parallel rank and no gradient-accumulation fusion none of those branches does anything, but
their host time remains: every adapter, forward and backward, on every micro batch. On the H200 the 8B
LoRA case at 4,096-token micro batches kept the GPU busy only two thirds of each step.

`adapter_forward` computes exactly what the adapter computes on that path, dropout(x) @ A^T @ B^T *
alpha / dim, with `F.linear` on the same weights, so autograd's C++ engine runs the backward. Gradients
still reach Megatron's DDP through `param.grad` (its hooks add them to the main-grad buffer), as they
do when Megatron-Core's linear layers run without gradient-accumulation fusion. Any other
configuration (tensor parallelism, experts, all-to-all, fused wgrad, activation offload, sequence-
parallel input re-gather) runs Megatron-Bridge's adapter forward unchanged.

The fused layers carry one adapter per projection (CanonicalLoRA: q, k, v on `linear_qkv`; gate, up on
`linear_fc1`). `group_forward` replaces their wrappers' forward. On the simple path it runs a group in two
matmuls: x @ [A_q; A_k; A_v]^T gives every adapter's low-rank activations at once ([.., n*r]), and one
block-structured B ([fused out, n*r]: B_q's rows where q sits in the fused output, zeros elsewhere) writes
them straight into the fused layout. The output equals the separate adapters'. With dropout each adapter
sees its own dropout mask of the input, as in PEFT; `DroppedLowRank` draws the n masks in one call, runs
one batched matmul and keeps x and the masks (not n dropped copies) for the backward. Elsewhere each adapter
runs Megatron-Bridge's forward and its output is placed in the fused layout (per query group: its query
heads, key, value; for gate/up: gate then up) on this rank's share, also when only part of a group is
listed (the wrappers' own forward needs every projection of the group).

On the simple path the adapters' update is added into the base layer's output by the low-rank output matmul
itself, scale included (`add_low_rank`: an in-place `addmm_`, whose epilogue reads and writes the output once):
what PEFT and Megatron-Bridge compute, in two passes over the [tokens, out] output fewer than writing the
product, scaling it and adding it.

Registry entry `lora_fast_path`, installed by `use_lora_fast_path()`.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .marker import replace_once

ENTRY = "lora_fast_path"
_SIMPLE = "_primus_simple_path"
_PLACEMENTS = "_primus_fused_placements"
QKV_KEYS = ("adapter_q", "adapter_k", "adapter_v")
GROUP_ORDER = (*QKV_KEYS, "adapter_gate", "adapter_up")


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


class AddLowRank(torch.autograd.Function):
    """base += low_rank @ b^T * scale, in place; returns base. The backward passes the gradient through to base
    and gives low_rank and b theirs from the matmul's (the scale applied to the small products)."""

    @staticmethod
    def forward(ctx, base: torch.Tensor, low_rank: torch.Tensor, b: torch.Tensor, scale: float) -> torch.Tensor:
        flat_low_rank = low_rank.reshape(-1, low_rank.shape[-1])
        base.view(-1, base.shape[-1]).addmm_(flat_low_rank, b.t(), alpha=scale)
        ctx.mark_dirty(base)
        ctx.save_for_backward(flat_low_rank, b)
        ctx.scale, ctx.low_rank_shape = scale, low_rank.shape
        return base

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        flat_low_rank, b = ctx.saved_tensors
        flat_grad = grad.reshape(-1, grad.shape[-1])
        grad_low_rank = grad_b = None
        if ctx.needs_input_grad[1]:
            grad_low_rank = _scaled(flat_grad @ b, ctx.scale).view(ctx.low_rank_shape)
        if ctx.needs_input_grad[2]:
            grad_b = _scaled(flat_grad.t() @ flat_low_rank, ctx.scale)
        return (grad if ctx.needs_input_grad[0] else None), grad_low_rank, grad_b, None


def _scaled(product: torch.Tensor, scale: float) -> torch.Tensor:
    return product if scale == 1.0 else product.mul_(scale)


def add_low_rank(base: torch.Tensor, low_rank: torch.Tensor, b: torch.Tensor, scale: float) -> torch.Tensor:
    """base + low_rank @ b^T * scale, the addition and the scale inside the matmul.

    Into base's own storage where autograd allows writing it: base is no view and no leaf that trains. The
    column-parallel layers' outputs qualify; a row-parallel layer's does not (at one tensor-parallel rank
    Megatron-Core's reduction, a custom autograd Function, returns its input, which autograd then treats as a
    view), nor does the FP8 base layer's (a view of its matmul's output). Those get a new tensor from `addmm`,
    which on CUDA first copies base into it: one pass more than in place, two fewer than a separate product,
    scale and sum."""
    if not base.dtype == low_rank.dtype == b.dtype:
        return base + F.linear(low_rank, b) * scale
    if base._is_view() or (base.is_leaf and base.requires_grad) or not base.is_contiguous():
        flat = torch.addmm(base.reshape(-1, base.shape[-1]), low_rank.reshape(-1, low_rank.shape[-1]), b.t(),
                           alpha=scale)
        return flat.view(base.shape)
    return AddLowRank.apply(base, low_rank, b, scale)


def qkv_rows(config, fused_size: int) -> dict[str, torch.Tensor]:
    """Where q, k and v sit in `linear_qkv`'s output (this rank's share): each query group holds its query
    heads, then its key head, then its value head."""
    head, per_group = config.kv_channels, config.num_attention_heads // config.num_query_groups
    groups = fused_size // ((per_group + 2) * head)
    index = torch.arange(fused_size).view(groups, per_group + 2, head)
    return {"adapter_q": index[:, :per_group].reshape(-1), "adapter_k": index[:, per_group].reshape(-1),
            "adapter_v": index[:, per_group + 1].reshape(-1)}


def gate_up_rows(config, fused_size: int) -> dict[str, torch.Tensor]:
    """Where gate and up sit in `linear_fc1`'s output (this rank's share): gate, then up."""
    half = fused_size // 2
    return {"adapter_gate": torch.arange(half), "adapter_up": torch.arange(half, fused_size)}


@dataclass(frozen=True)
class Placement:
    """Where a group's present adapters write in the fused output (on the output's device)."""

    index: torch.Tensor
    """Fused-output row of each row of the adapters' stacked outputs."""
    inverse: torch.Tensor | None
    """When the adapters cover every fused row: the stacked row of each fused row (None: in order already)."""
    complete: bool


def placement(wrapper, keys: tuple[str, ...], fused_size: int, device: torch.device) -> Placement:
    """The placement of the adapters `keys` of this wrapper (cached per keys, size and device)."""
    cache = wrapper.__dict__.setdefault(_PLACEMENTS, {})
    cache_key = (keys, fused_size, device)
    if cache_key not in cache:
        rows_of = qkv_rows if keys[0] in QKV_KEYS else gate_up_rows
        rows = rows_of(wrapper.to_wrap.config, fused_size)
        index = torch.cat([rows[key] for key in keys])
        complete = index.numel() == fused_size
        in_order = complete and bool((index == torch.arange(fused_size)).all())
        inverse = torch.argsort(index).to(device) if complete and not in_order else None
        cache[cache_key] = Placement(index.to(device), inverse, complete)
    return cache[cache_key]


def present_adapters(wrapper) -> list[tuple[str, nn.Module]]:
    """(key, adapter) of the projections the run adapts, in fused-output order; CanonicalLoRA leaves the
    others None."""
    return [(key, wrapper.adapter[key]) for key in GROUP_ORDER
            if key in wrapper.adapter and wrapper.adapter[key] is not None]


def active_dropout(adapter) -> float:
    dropout = adapter.dropout
    return dropout.p if isinstance(dropout, nn.Dropout) and dropout.training else 0.0


def groupable(adapters: list) -> bool:
    """One matmul pair can run these adapters: simple path, same rank, scale and dropout, dropout on the input."""
    first = adapters[0]
    return all(is_simple(a) and a.dropout_position == "pre" and isinstance(a.activation, nn.Identity)
               and (a.dim, a.alpha, active_dropout(a)) == (first.dim, first.alpha, active_dropout(first))
               for a in adapters)


class DroppedLowRank(torch.autograd.Function):
    """[dropout_1(x) @ A_1^T, ..., dropout_n(x) @ A_n^T] with an independent dropout mask per adapter.

    Saves x and the n boolean masks; the backward rebuilds each dropped-out input from them.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, a_stack: torch.Tensor, p: float) -> torch.Tensor:
        n, rank, width = a_stack.shape
        flat = x.reshape(-1, width)
        dropped, keep = torch.native_dropout(flat.expand(n, *flat.shape), p, True)
        low_rank = torch.bmm(dropped, a_stack.transpose(1, 2))
        ctx.save_for_backward(flat, keep, a_stack)
        ctx.scale, ctx.input_shape = 1.0 / (1.0 - p), x.shape
        return low_rank.transpose(0, 1).reshape(*x.shape[:-1], n * rank)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        flat, keep, a_stack = ctx.saved_tensors
        n, rank, _ = a_stack.shape
        grad_low_rank = grad.reshape(-1, n, rank).transpose(0, 1)
        grad_x = grad_a = None
        if ctx.needs_input_grad[0]:
            grad_dropped = torch.bmm(grad_low_rank, a_stack)
            grad_x = torch.ops.aten.native_dropout_backward(grad_dropped, keep, ctx.scale).sum(0)
            grad_x = grad_x.view(ctx.input_shape)
        if ctx.needs_input_grad[1]:
            dropped = torch.ops.aten.native_dropout_backward(flat.expand(n, *flat.shape), keep, ctx.scale)
            grad_a = torch.bmm(grad_low_rank.transpose(1, 2), dropped)
        return grad_x, grad_a, None


def place(stacked: torch.Tensor, where: Placement, fused_size: int, dim: int) -> torch.Tensor:
    """`stacked` (the adapters' rows one after another along `dim`) in the fused layout, zeros where no
    adapter writes."""
    if not where.complete:
        shape = list(stacked.shape)
        shape[dim] = fused_size
        return stacked.new_zeros(shape).index_copy(dim, where.index, stacked)
    return stacked if where.inverse is None else stacked.index_select(dim, where.inverse)


def block_b(adapters: list, where: Placement, fused_size: int) -> torch.Tensor:
    """[fused_size, n*r]: adapter i's B * alpha/dim in its rows and its rank columns, zeros elsewhere."""
    stacked = torch.block_diag(*(a.linear_out.weight for a in adapters)) * (adapters[0].alpha / adapters[0].dim)
    return place(stacked, where, fused_size, 0)


def grouped_low_rank(adapters: list, x: torch.Tensor) -> torch.Tensor:
    """Every adapter's low-rank activations [.., n*r], in one matmul (each with its own dropout mask)."""
    p = active_dropout(adapters[0])
    if p > 0:
        return DroppedLowRank.apply(x, torch.stack([a.linear_in.weight for a in adapters]), p)
    a = adapters[0].linear_in.weight if len(adapters) == 1 else torch.cat([a.linear_in.weight for a in adapters])
    return F.linear(x, a)


def placed_forward(wrapper, present: list, where: Placement, x: torch.Tensor, fused_size: int,
                   *args, **kwargs) -> torch.Tensor:
    """Each adapter through Megatron-Bridge's forward, its output placed in the fused layout."""
    outputs = torch.cat([wrapper.adapter_forward(adapter, x, *args, **kwargs) for _, adapter in present], dim=-1)
    return place(outputs, where, fused_size, outputs.dim() - 1)


def group_forward(wrapper, x: torch.Tensor, *args, **kwargs):
    """The fused layer's output plus its per-projection adapters' (LoRALinearSplitQKV/FC1UpGate forward)."""
    linear_output, bias, layernorm_output = wrapper.base_linear_forward(x, *args, **kwargs)
    present = present_adapters(wrapper)
    if not wrapper._adapter_enabled or not present:
        return linear_output, bias
    fused_size = linear_output.shape[-1]
    where = placement(wrapper, tuple(key for key, _ in present), fused_size, linear_output.device)
    adapters = [adapter for _, adapter in present]
    if groupable(adapters):
        low_rank = grouped_low_rank(adapters, layernorm_output)
        return add_low_rank(linear_output, low_rank, block_b(adapters, where, fused_size), 1.0), bias
    update = placed_forward(wrapper, present, where, layernorm_output, fused_size, *args, **kwargs)
    return linear_output + update.reshape(linear_output.shape), bias


def lora_linear_forward(wrapper, x: torch.Tensor, *args, **kwargs):
    """A one-adapter layer's output plus its adapter's (LoRALinear forward: linear_proj, linear_fc2)."""
    linear_output, bias, layernorm_output = wrapper.base_linear_forward(x, *args, **kwargs)
    if not wrapper._adapter_enabled:
        return linear_output, bias
    adapter = wrapper.adapter
    if groupable([adapter]):
        # adapter_forward's order; nn.Dropout keeps the dropped copy, so a recomputed input (linear_fc2's SwiGLU
        # output, compat/swiglu_recompute.py) is still freed
        low_rank = F.linear(adapter.dropout(layernorm_output), adapter.linear_in.weight)
        return add_low_rank(linear_output, low_rank, adapter.linear_out.weight, adapter.alpha / adapter.dim), bias
    update = wrapper.adapter_forward(adapter, layernorm_output.contiguous(), *args, **kwargs)
    return linear_output + update.reshape(linear_output.shape), bias


def use_lora_fast_path() -> None:
    """Route eligible adapters through `adapter_forward`, the fused layers' adapter groups through `group_forward`
    and the one-adapter layers through `lora_linear_forward` (idempotent; after Megatron-Bridge's import)."""
    from megatron.bridge.peft.canonical_lora import LoRALinearSplitFC1UpGate, LoRALinearSplitQKV
    from megatron.bridge.peft.lora_layers import LoRALinear
    from megatron.bridge.peft.utils import ParallelLinearAdapter

    def make(library_forward):
        def forward(self, x, *args, **kwargs):
            if is_simple(self):
                return adapter_forward(self, x)
            return library_forward(self, x, *args, **kwargs)

        forward.__doc__ = adapter_forward.__doc__
        return forward

    def make_wrapper(wrapper_forward):
        def make_forward(library_forward):
            def forward(self, x, *args, **kwargs):
                return wrapper_forward(self, x, *args, **kwargs)

            forward.__doc__ = wrapper_forward.__doc__
            return forward

        return make_forward

    replace_once(ENTRY, ParallelLinearAdapter, "forward", make)
    replace_once(ENTRY, LoRALinearSplitQKV, "forward", make_wrapper(group_forward))
    replace_once(ENTRY, LoRALinearSplitFC1UpGate, "forward", make_wrapper(group_forward))
    replace_once(ENTRY, LoRALinear, "forward", make_wrapper(lora_linear_forward))
