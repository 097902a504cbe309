"""Micro-batches of packed rows in a deterministic, resumable order (both engines read rows through this)."""

from collections.abc import Iterator

import numpy as np
import torch

from .packed import PackedSplit
from .split import mix64


def epoch_order(n: int, seed: int | None, epoch: int) -> np.ndarray:
    """Row order for one epoch: a seeded permutation (splitmix64 keys), or 0..n-1 without a seed."""
    if seed is None:
        return np.arange(n)
    keys = mix64(np.arange(n, dtype=np.uint64), seed * 1_000_003 + epoch)
    return np.argsort(keys, kind="stable")


def sample_indices(n: int, start_index: int, seed: int | None, epochs: int | None) -> Iterator[int]:
    """Row indices from global sample position start_index on, epoch after epoch."""
    if n == 0:
        return
    position = start_index
    while epochs is None or position < epochs * n:
        epoch, offset = divmod(position, n)
        yield from epoch_order(n, seed, epoch)[offset:].tolist()
        position = (epoch + 1) * n


def collate(split: PackedSplit, indices: list[int]) -> dict[str, torch.Tensor]:
    """Stacked [batch, seq_length] tensors plus cu_seqlens over the flattened batch (THD layout)."""
    rows = [split[i] for i in indices]
    lengths = np.concatenate([row.seq_lens for row in rows])
    cu_seqlens = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return {
        "input_ids": torch.from_numpy(np.stack([r.input_ids for r in rows])),
        "labels": torch.from_numpy(np.stack([r.labels for r in rows])),
        "loss_mask": torch.from_numpy(np.stack([r.loss_mask for r in rows])),
        "position_ids": torch.from_numpy(np.stack([r.position_ids for r in rows])),
        "cu_seqlens": torch.from_numpy(cu_seqlens),
        "max_seqlen": torch.tensor(int(lengths.max())),
        "indices": torch.tensor(indices, dtype=torch.int64),
    }


def iterate_batches(split: PackedSplit, micro_batch_size: int, start_index: int = 0, seed: int | None = None,
                    epochs: int | None = None, drop_last: bool = True) -> Iterator[dict[str, torch.Tensor]]:
    """Micro-batches from global sample position start_index (resume: pass samples consumed so far).

    Rows are shuffled per epoch when a seed is given (the same seed gives the same order everywhere);
    epochs=None repeats forever. A batch may span an epoch boundary. With a finite epochs, the last short
    batch is dropped unless drop_last=False.
    """
    if micro_batch_size < 1:
        raise ValueError(f"micro_batch_size must be at least 1, got {micro_batch_size}")
    batch: list[int] = []
    for index in sample_indices(len(split), start_index, seed, epochs):
        batch.append(index)
        if len(batch) == micro_batch_size:
            yield collate(split, batch)
            batch = []
    if batch and not drop_last:
        yield collate(split, batch)
