"""Which rows each rank trains on at each step, and the model inputs built from them.

The row order is the data pipeline's (`primus_bridge.data.batches`): one seeded permutation per epoch,
addressed by the global sample position, so a resumed run continues with exactly the next sample
(position = step x global batch). Rank r takes the r-th slice of every global batch.
"""

from dataclasses import dataclass
from itertools import islice

import torch

from ...data.batches import collate, sample_indices
from .attention_mask import packed_causal_mask
from .distributed import DistEnv
from .model import PACKED_BY_POSITION_IDS


@dataclass
class Batch:
    """One micro-batch on the device. The 4D mask is built when the batch is used, so only one is alive at a time."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    position_ids: torch.Tensor
    cu_seqlens: torch.Tensor | None
    """Document boundaries over the flattened batch; None for kernels that read packing from position_ids."""
    mask_dtype: torch.dtype

    @property
    def trained_tokens(self) -> torch.Tensor:
        return (self.labels != -100).sum()

    def model_inputs(self) -> dict:
        mask = None
        if self.cu_seqlens is not None:
            mask = packed_causal_mask(self.cu_seqlens, *self.input_ids.shape, self.mask_dtype, self.input_ids.device)
        return {"input_ids": self.input_ids, "position_ids": self.position_ids, "attention_mask": mask}


def make_batch(split, indices: list[int], device: torch.device, attn_implementation: str,
               mask_dtype: torch.dtype) -> Batch:
    """Rows -> tensors; sdpa/eager get a 4D block-diagonal causal mask, varlen kernels only position_ids."""
    tensors = collate(split, indices)
    cu_seqlens = None if attn_implementation in PACKED_BY_POSITION_IDS else tensors["cu_seqlens"]
    return Batch(tensors["input_ids"].to(device), tensors["labels"].to(device), tensors["position_ids"].to(device),
                 cu_seqlens, mask_dtype)


@dataclass(frozen=True)
class BatchPlan:
    """How one optimizer step's global batch splits over ranks and micro-batches."""

    global_batch: int
    micro_batch: int
    world_size: int

    @property
    def per_rank(self) -> int:
        return self.global_batch // self.world_size

    @property
    def accumulation_steps(self) -> int:
        return self.per_rank // self.micro_batch

    def micro_batches(self, global_indices: list[int], rank: int) -> list[list[int]]:
        """This rank's micro-batches (row indices) out of one global batch."""
        mine = global_indices[rank * self.per_rank:(rank + 1) * self.per_rank]
        return [mine[i:i + self.micro_batch] for i in range(0, len(mine), self.micro_batch)]


class StepSampler:
    """Global batches of train-row indices from a given sample position on (every rank draws the same stream)."""

    def __init__(self, split, seed: int, position: int):
        self._stream = sample_indices(len(split), position, seed, epochs=None)

    def next_global_batch(self, size: int) -> list[int]:
        return list(islice(self._stream, size))


def step_batches(split, sampler: StepSampler, plan: BatchPlan, env: DistEnv, attn_implementation: str,
                 mask_dtype: torch.dtype) -> list[Batch]:
    global_indices = sampler.next_global_batch(plan.global_batch)
    return [make_batch(split, micro, env.device, attn_implementation, mask_dtype)
            for micro in plan.micro_batches(global_indices, env.rank)]
