"""RoPE on packed (THD) streams in one vectorised pass, for Megatron-Core without TransformerEngine.

Why this module exists: Megatron-Core 0.19.2 applies RoPE to a packed stream either with TE's fused
kernel (`apply_rope_fusion`, TE only) or with `rope_utils._apply_rotary_pos_emb_thd`, which reads
cu_seqlens on the host (`.tolist()` and `.item()`: two device syncs) and then loops over the
documents in Python: about 100 tensor operations (half of them kernel launches) forward and
backward per document. It runs for the queries and for the keys of every layer: on an 8,192-token
stream of ~135 SFT documents that is ~14,000 operations a call, ~450,000 (~225,000 kernel launches)
and 64 device syncs a micro batch for 16 layers, far more host time than the layers' matmuls take on
the GPU. `packed_rope_thd` does the same call in ~110 operations whatever the number of documents.

`packed_rope_thd` gives every token the frequencies of its position inside its document (found on
the device with `searchsorted`, no sync; once per micro batch, shared by every layer) and applies
Megatron-Core's own `_apply_rotary_pos_emb_bshd` once: the same element-wise arithmetic, so the result
is bit for bit Megatron's. Context-parallel streams (their per-rank slicing) and the deprecated
`multi_latent_attention` keyword go to Megatron-Core's function unchanged.

Registry entry `packed_rope`, installed by `use_packed_rope()` once the registry has verified its targets
(`apply_adaptations`): it replaces `rope_utils._apply_rotary_pos_emb_thd`, the one function
`apply_rotary_pos_emb` calls for THD without fusion. With `apply_rope_fusion` (TE) the fused kernel runs
and this is never reached.
"""

import torch
from megatron.core.models.common.embeddings import rope_utils

from ..micro_batch_cache import MicroBatchCache
from .marker import library_original, replace_once

ENTRY = "packed_rope"
_REPLACED = "_apply_rotary_pos_emb_thd"


def positions_in_documents(cu_seqlens: torch.Tensor, total: int) -> torch.Tensor:
    """[total] int64: each token's offset from the start of its document, computed on cu_seqlens' device."""
    starts = cu_seqlens.to(torch.int64)
    tokens = torch.arange(total, device=cu_seqlens.device)
    document = torch.searchsorted(starts, tokens, right=True) - 1
    return tokens - starts[document]


def token_frequencies(cu_seqlens: torch.Tensor, freqs: torch.Tensor, total: int, device: torch.device) -> torch.Tensor:
    """Each token's rotary frequencies: those of its position inside its document."""
    return freqs[positions_in_documents(cu_seqlens.to(device), total)]


_token_freqs = MicroBatchCache(token_frequencies)
"""Queries and keys of every layer share one micro batch's cu_seqlens and freqs: computed once per micro batch."""


def _megatron_thd():
    """Megatron-Core's own function, whether or not `use_packed_rope()` has run."""
    return library_original(getattr(rope_utils, _REPLACED))


def packed_rope_thd(t: torch.Tensor, cu_seqlens: torch.Tensor, freqs: torch.Tensor,
                    rotary_interleaved: bool = False, mla_rotary_interleaved: bool = False, mscale: float = 1.0,
                    cp_group=None, multi_latent_attention=None) -> torch.Tensor:
    """Megatron-Core's `_apply_rotary_pos_emb_thd` ([t, heads, dim] -> same) without its per-document loop."""
    if cp_group is None or cp_group.size() != 1 or multi_latent_attention is not None:
        return _megatron_thd()(t, cu_seqlens, freqs, rotary_interleaved=rotary_interleaved,
                               mla_rotary_interleaved=mla_rotary_interleaved, mscale=mscale, cp_group=cp_group,
                               multi_latent_attention=multi_latent_attention)
    total = t.size(0)
    token_freqs = freqs if freqs.size(0) == total else _token_freqs.get(cu_seqlens, freqs, total, t.device)
    return rope_utils._apply_rotary_pos_emb_bshd(
        t.unsqueeze(1), token_freqs, rotary_interleaved=rotary_interleaved,
        mla_rotary_interleaved=mla_rotary_interleaved, mscale=mscale).squeeze(1)


def use_packed_rope() -> None:
    """Route Megatron-Core's unfused THD RoPE through `packed_rope_thd` (idempotent)."""

    def make(original):
        def vectorised(*args, **kwargs):
            return packed_rope_thd(*args, **kwargs)

        vectorised.__doc__ = packed_rope_thd.__doc__
        return vectorised

    replace_once(ENTRY, rope_utils, _REPLACED, make)
