"""Document-causal attention masks for packed rows, built from cu_seqlens.

A packed row holds several documents back to back; `cu_seqlens` = [0, len0, len0+len1, ..., total]
marks where each starts. Token q may attend to token k only when both lie in the same document and
k <= q. FlexAttention's block mask skips every block that lies wholly across documents.
"""

import torch
from torch.nn.attention.flex_attention import BlockMask, create_block_mask

from .micro_batch_cache import MicroBatchCache


def document_ids(cu_seqlens: torch.Tensor, total: int) -> torch.Tensor:
    """[total] int32: the document index of every token position (how many documents end at or before it).

    Sync-free: the output's size is `total`, known on the host, so building a micro batch's mask never waits for
    the GPU (counting tokens per document with repeat_interleave read cu_seqlens back to the host: one device sync
    per micro batch). That the documents cover the row is checked on the host where rows are collated
    (dataset.py); positions past the last document would form one more document of their own."""
    positions = torch.arange(total, dtype=cu_seqlens.dtype, device=cu_seqlens.device)
    return torch.searchsorted(cu_seqlens[1:].contiguous(), positions, right=True, out_int32=True)


def document_causal_block_mask(cu_seqlens: torch.Tensor, total: int) -> BlockMask:
    doc = document_ids(cu_seqlens, total)

    def same_document_causal(batch, head, q_idx, kv_idx):
        return (doc[q_idx] == doc[kv_idx]) & (q_idx >= kv_idx)

    return create_block_mask(same_document_causal, B=None, H=None, Q_LEN=total, KV_LEN=total,
                             device=cu_seqlens.device)


def dense_document_causal_mask(cu_seqlens: torch.Tensor, total: int) -> torch.Tensor:
    """[total, total] bool, True where attention is allowed (the reference the block mask must equal)."""
    doc = document_ids(cu_seqlens, total)
    positions = torch.arange(total, device=cu_seqlens.device)
    return (doc[:, None] == doc[None, :]) & (positions[:, None] >= positions[None, :])


def block_mask_cache() -> MicroBatchCache[BlockMask]:
    """One block mask per micro batch: get(cu_seqlens, total); every layer receives the same cu_seqlens."""
    return MicroBatchCache(document_causal_block_mask)
