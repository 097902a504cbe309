"""Block-diagonal causal masks for packed rows: a token sees only earlier tokens of its own document."""

import torch


def segment_ids(cu_seqlens: torch.Tensor, batch: int, seq_length: int) -> torch.Tensor:
    """[batch, seq_length] document index of every position, from cu_seqlens over the flattened batch."""
    cu = cu_seqlens.to(torch.long)
    if int(cu[-1]) != batch * seq_length or int(cu[0]) != 0:
        raise ValueError(f"cu_seqlens span {int(cu[0])}..{int(cu[-1])}, expected 0..{batch * seq_length} "
                         f"({batch} rows of {seq_length})")
    flat = torch.arange(batch * seq_length, device=cu.device)
    return torch.searchsorted(cu[1:], flat, right=True).view(batch, seq_length)


def packed_causal_mask(cu_seqlens: torch.Tensor, batch: int, seq_length: int, dtype: torch.dtype,
                       device: torch.device) -> torch.Tensor:
    """[batch, 1, seq, seq] additive mask (0 where attended, dtype's minimum elsewhere) for sdpa / eager."""
    ids = segment_ids(cu_seqlens.to(device), batch, seq_length)
    causal = torch.ones(seq_length, seq_length, dtype=torch.bool, device=device).tril()
    allowed = (causal & (ids[:, :, None] == ids[:, None, :]))[:, None]
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)
