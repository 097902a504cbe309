"""RoPE on packed (THD) streams in one vectorised pass, fused into one kernel on the GPU, for Megatron-Core without
TransformerEngine.

Why this module exists: Megatron-Core 0.19.2 applies RoPE to a packed stream either with TE's fused
kernel (`apply_rope_fusion`, TE only) or with `rope_utils._apply_rotary_pos_emb_thd`, which reads
cu_seqlens on the host (`.tolist()` and `.item()`: two device syncs) and then loops over the
documents in Python: about 100 tensor operations (half of them kernel launches) forward and
backward per document. It runs for the queries and for the keys of every layer: on an 8,192-token
stream of ~135 SFT documents that is ~14,000 operations a call, ~450,000 (~225,000 kernel launches)
and 64 device syncs a micro batch for 16 layers, far more host time than the layers' matmuls take on
the GPU. `packed_rope_thd` does the same call in ~110 operations whatever the number of documents.

`packed_rope_thd` gives every token the frequencies of its position inside its document (found on
the device with `searchsorted`, no sync; once per micro batch, shared by every layer) and rotates the
whole stream at once. Context-parallel streams (their per-rank slicing) and the deprecated
`multi_latent_attention` keyword go to Megatron-Core's function unchanged.

The rotation itself:
- on the CPU, with MLA interleaving (`mla_rotary_interleaved`) or with PRIMUS_BRIDGE_EAGER_ROPE=1 in the
  environment (A/B measurements): Megatron-Core's own `_apply_rotary_pos_emb_bshd`, the same element-wise
  arithmetic as its loop, so the result is bit for bit Megatron's;
- on a GPU (CUDA or ROCm): `fused_rotation`, one kernel forward and one backward (with pass-through
  channels, rot_dim < head_dim, their copy may be a second), compiled by torch.compile (Inductor).
  Megatron-Core's eager version launches a kernel per operation, six of them memory-bound passes over the
  whole [tokens, heads, head_dim] tensor forward (mul, neg, cat, mul, add, cat) and as many backward: ~15%
  of the GPU time of a Llama-3-8B LoRA step at 8,192 tokens, second only to the matmuls. The kernel reads
  the micro batch's `rotation_tables`: cos and sin of each token's frequencies times mscale, in float32,
  computed once per micro batch (and mscale) by the first layer's queries and kept in a `MicroBatchCache`
  beside the token frequencies ([tokens, 1, 1, 2 * rot_dim] float32: 4 MB at 4,096 tokens and rot_dim 128),
  read by every layer's queries and keys, forward and backward. Computing the two transcendentals inside
  the kernel instead, for every head and channel, made it several times slower than its memory traffic.
  The rotation is float32 and rounds once to the input's dtype (`rope_in_float32`): float32 inputs give
  Megatron's result up to float32 rounding (the tables' cos and sin are the same float32 functions of the
  same angles; another kernel's may differ in the last bit); bf16 results are within one bf16 rounding of
  the exact value, where Megatron's eager ops round after every step (cos and sin, both products, the
  sum), so the two differ by a few bf16 units of the products (where the sum cancels, more relative to
  it), the fused result being the more accurate.
  Each variant (rotated halves or interleaved pairs; all channels or the first rot_dim) is its own
  compiled function, compiled as the engine's other kernels are (`compile_settings.STATIC_TUNED`: a graph per
  shape, tuned; about 4x faster than one graph for dynamic shapes on an H100, that module says). The queries and
  the keys (32 and 8 heads for Llama-3-8B, the queries copied out of the QKV projection's output, the keys a
  strided view of it), each with and without autograd (validation, a recomputed forward), make 4 graphs per
  micro-batch length and model (`allow_a_graph_per_shape`); mscale is in the tables. The first micro batch
  compiles them (seconds).

Registry entry `packed_rope`, installed by `use_packed_rope()` once the registry has verified its targets
(`apply_adaptations`): it replaces `rope_utils._apply_rotary_pos_emb_thd`, the one function
`apply_rotary_pos_emb` calls for THD without fusion; it also fingerprints `_apply_rotary_pos_emb_bshd` and
`_rotate_half`, whose arithmetic `fused_rope` reproduces. With `apply_rope_fusion` (TE) TE's fused kernel
runs and this is never reached. Sequences in [s, b, h, d] (no packing) keep Megatron-Core's eager function.
"""

import functools
import os

import torch
from megatron.core.models.common.embeddings import rope_utils

from ..compile_settings import STATIC_TUNED, allow_a_graph_per_shape
from ..micro_batch_cache import MicroBatchCache
from .marker import library_original, replace_once

ENTRY = "packed_rope"
_REPLACED = "_apply_rotary_pos_emb_thd"
EAGER_ROPE_SWITCH = "PRIMUS_BRIDGE_EAGER_ROPE"
"""Set to 1: Megatron-Core's eager RoPE on the GPU too (A/B measurements of the fused kernel)."""


def positions_in_documents(cu_seqlens: torch.Tensor, total: int) -> torch.Tensor:
    """[total] int64: each token's offset from the start of its document, computed on cu_seqlens' device."""
    starts = cu_seqlens.to(torch.int64)
    tokens = torch.arange(total, device=cu_seqlens.device)
    document = torch.searchsorted(starts, tokens, right=True) - 1
    return tokens - starts[document]


def token_frequencies(cu_seqlens: torch.Tensor, freqs: torch.Tensor, total: int, device: torch.device) -> torch.Tensor:
    """Each token's rotary frequencies: those of its position inside its document."""
    return freqs[positions_in_documents(cu_seqlens.to(device), total)]


def rotation_tables(freqs: torch.Tensor, mscale: float = 1.0) -> torch.Tensor:
    """[tokens, b, 1, 2 * rot_dim] float32 from freqs [tokens, b, 1, rot_dim]: cos(freqs) * mscale, then
    sin(freqs) * mscale, of the float32 angles: the factors Megatron-Core's `_apply_rotary_pos_emb_bshd` multiplies
    by, before its rounding to t's dtype. `fused_rotation` reads them instead of computing two transcendentals for
    every element of every head."""
    angles = freqs.float()
    return torch.cat((torch.cos(angles) * mscale, torch.sin(angles) * mscale), dim=-1)


_token_freqs = MicroBatchCache(token_frequencies)
"""Queries and keys of every layer share one micro batch's cu_seqlens and freqs: computed once per micro batch."""
_tables = MicroBatchCache(rotation_tables)
"""Keyed by the micro batch's token frequencies (one tensor per micro batch, see `micro_batch_frequencies`) and
mscale: the queries and keys of every layer, forward, recomputed forward and backward, read one table."""


def micro_batch_frequencies(cu_seqlens: torch.Tensor, freqs: torch.Tensor, total: int,
                            device: torch.device) -> torch.Tensor:
    """[total, 1, 1, rot_dim]: each token's frequencies, freqs itself where it covers the whole stream (Megatron-Core
    then offsets each document by its start, so token i takes freqs[i])."""
    return freqs if freqs.size(0) == total else _token_freqs.get(cu_seqlens, freqs, total, device)


def micro_batch_tables(cu_seqlens: torch.Tensor, freqs: torch.Tensor, total: int, device: torch.device,
                       mscale: float) -> torch.Tensor:
    """`rotation_tables` of the micro batch's token frequencies, built by its first call."""
    return _tables.get(micro_batch_frequencies(cu_seqlens, freqs, total, device), mscale)


def _megatron_thd():
    """Megatron-Core's own function, whether or not `use_packed_rope()` has run."""
    return library_original(getattr(rope_utils, _REPLACED))


# -- the rotation ------------------------------------------------------------------------------------------------


def _turned(x: torch.Tensor, interleaved: bool) -> torch.Tensor:
    """Megatron-Core's `_rotate_half`: every rotation pair (a, b) becomes (-b, a). The pairs are channels i and
    i + rot_dim/2, or with `interleaved` the neighbouring channels 2i and 2i + 1. Written as a flip along a pair
    axis times (-1, 1) (exact: a sign), not as a concatenation, which Inductor may write out as a buffer of its
    own: an element-wise index, it stays inside the one kernel."""
    sign = torch.arange(2, device=x.device, dtype=x.dtype) * 2 - 1
    if interleaved:
        return (x.unflatten(-1, (-1, 2)).flip(-1) * sign).flatten(-2)
    return (x.unflatten(-1, (2, -1)).flip(-2) * sign[:, None]).flatten(-2)


def _rotation(t: torch.Tensor, tables: torch.Tensor, interleaved: bool, partial: bool) -> torch.Tensor:
    """t [s, b, h, d] rotated by `rotation_tables` [s, b or 1, 1, 2 * rot_dim] on its first rot_dim channels
    (`partial`: rot_dim < d, the rest passed through), in float32, rounded once to t's dtype."""
    rot_dim = tables.shape[-1] // 2
    x = (t[..., :rot_dim] if partial else t).float()
    cos, sin = tables[..., :rot_dim], tables[..., rot_dim:]
    rotated = (x * cos + _turned(x, interleaved) * sin).to(t.dtype)
    return torch.cat((rotated, t[..., rot_dim:]), dim=-1) if partial else rotated


def _rotates_part(t: torch.Tensor, tables: torch.Tensor) -> bool:
    """rot_dim < head_dim: the last channels pass through unchanged."""
    return tables.shape[-1] != 2 * t.shape[-1]


def rope_in_float32(t: torch.Tensor, freqs: torch.Tensor, mscale: float = 1.0,
                    interleaved: bool = False) -> torch.Tensor:
    """Megatron-Core's `_apply_rotary_pos_emb_bshd` (without MLA interleaving) computed in float32 and rounded once
    to t's dtype: out = t * cos + turned(t) * sin on the first rot_dim channels, the rest unchanged."""
    tables = rotation_tables(freqs, mscale)
    return _rotation(t, tables, interleaved, partial=_rotates_part(t, tables))


def _halves(t, tables):
    return _rotation(t, tables, interleaved=False, partial=False)


def _halves_partial(t, tables):
    return _rotation(t, tables, interleaved=False, partial=True)


def _pairs(t, tables):
    return _rotation(t, tables, interleaved=True, partial=False)


def _pairs_partial(t, tables):
    return _rotation(t, tables, interleaved=True, partial=True)


_VARIANTS = {(False, False): _halves, (False, True): _halves_partial, (True, False): _pairs,
             (True, True): _pairs_partial}


@functools.cache
def _compiled_rotation(interleaved: bool, partial: bool):
    """One variant of `_rotation` compiled into one kernel forward and one backward per shape. Each variant is its
    own function because Dynamo counts recompiles per code object."""
    allow_a_graph_per_shape()
    return torch.compile(_VARIANTS[interleaved, partial], **STATIC_TUNED)


def fused_rotation(t: torch.Tensor, tables: torch.Tensor, interleaved: bool = False) -> torch.Tensor:
    """t rotated by `rotation_tables`, compiled (on whatever device t is): reads t and the tables, writes the result;
    its backward reads the output gradient and the same tables."""
    return _compiled_rotation(interleaved, _rotates_part(t, tables))(t, tables)


def fused_rope(t: torch.Tensor, freqs: torch.Tensor, mscale: float = 1.0, interleaved: bool = False) -> torch.Tensor:
    """`rope_in_float32`, compiled: `rotation_tables` of freqs, then `fused_rotation`."""
    return fused_rotation(t, rotation_tables(freqs, mscale), interleaved)


def eager_rope_requested() -> bool:
    """PRIMUS_BRIDGE_EAGER_ROPE=1: read at every call, so a test or a benchmark can switch it in one process."""
    return os.environ.get(EAGER_ROPE_SWITCH, "0") == "1"


def fused_rope_wanted(t: torch.Tensor, mla_rotary_interleaved: bool) -> bool:
    """The fused rotation on a GPU; Megatron-Core's own on the CPU, with MLA interleaving or with
    PRIMUS_BRIDGE_EAGER_ROPE=1."""
    return t.is_cuda and not mla_rotary_interleaved and not eager_rope_requested()


# -- the packed stream -------------------------------------------------------------------------------------------


def fused_packed_rope(t: torch.Tensor, cu_seqlens: torch.Tensor, freqs: torch.Tensor,
                      rotary_interleaved: bool = False, mscale: float = 1.0) -> torch.Tensor:
    """The packed stream t [t, heads, dim] rotated by `fused_rotation` with its micro batch's tables (what
    `packed_rope_thd` runs on a GPU)."""
    tables = micro_batch_tables(cu_seqlens, freqs, t.size(0), t.device, mscale)
    return fused_rotation(t.unsqueeze(1), tables, rotary_interleaved).squeeze(1)


def packed_rope_thd(t: torch.Tensor, cu_seqlens: torch.Tensor, freqs: torch.Tensor,
                    rotary_interleaved: bool = False, mla_rotary_interleaved: bool = False, mscale: float = 1.0,
                    cp_group=None, multi_latent_attention=None) -> torch.Tensor:
    """Megatron-Core's `_apply_rotary_pos_emb_thd` ([t, heads, dim] -> same) without its per-document loop."""
    if cp_group is None or cp_group.size() != 1 or multi_latent_attention is not None:
        return _megatron_thd()(t, cu_seqlens, freqs, rotary_interleaved=rotary_interleaved,
                               mla_rotary_interleaved=mla_rotary_interleaved, mscale=mscale, cp_group=cp_group,
                               multi_latent_attention=multi_latent_attention)
    if fused_rope_wanted(t, mla_rotary_interleaved):
        return fused_packed_rope(t, cu_seqlens, freqs, rotary_interleaved, mscale)
    token_freqs = micro_batch_frequencies(cu_seqlens, freqs, t.size(0), t.device)
    return rope_utils._apply_rotary_pos_emb_bshd(t.unsqueeze(1), token_freqs, rotary_interleaved=rotary_interleaved,
                                                 mla_rotary_interleaved=mla_rotary_interleaved,
                                                 mscale=mscale).squeeze(1)


def use_packed_rope() -> None:
    """Route Megatron-Core's unfused THD RoPE through `packed_rope_thd` (idempotent)."""

    def make(original):
        def vectorised(*args, **kwargs):
            return packed_rope_thd(*args, **kwargs)

        vectorised.__doc__ = packed_rope_thd.__doc__
        return vectorised

    replace_once(ENTRY, rope_utils, _REPLACED, make)
