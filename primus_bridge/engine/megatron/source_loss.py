"""The validation loss per source of a data mixture, through Megatron-Bridge's own evaluation and writers.

The hf engine reports each source's mean token loss beside the total; here the same value, the same way:
- the valid and test streams of a mixture carry each token's source (dataset.SOURCE_IDS; a row holds one source,
  a stream lays several rows end to end);
- `SourceLossForwardStep`, finetune()'s forward step, takes them off the batch before Megatron-Bridge's `get_batch`
  reads it, runs Megatron-Bridge's GPT forward step unchanged and adds one reduction per source to what its loss
  function reports: `lm loss/<name>` = [loss sum, trained tokens] of that source's tokens, from the same
  `masked_next_token_loss` as `lm loss` with the loss mask kept to the source's tokens;
- Megatron-Bridge's `evaluate` sums each key's pair over the micro batches and data-parallel ranks and divides: the
  mean over the source's trained tokens, as `lm loss` is over all of them (so the total is unchanged and the
  token-weighted mean of the sources' values). Its writers log them beside the total: `lm loss/<name> validation`
  on TensorBoard and W&B, `val/lm loss_<name>` on MLflow (its metric names keep one '/');
- a source without trained tokens in an evaluation sums to 0 / 0: `DropEmptySources` leaves it out of that
  evaluation's results (as the hf engine does), instead of a NaN.
Training streams carry no source ids: the training step gets Megatron-Bridge's forward step and loss as they are.
"""

from functools import partial

import torch
from megatron.bridge.training.callbacks import Callback, CallbackContext
from megatron.bridge.training.gpt_step import forward_step
from megatron.bridge.training.losses import masked_next_token_loss
from megatron.bridge.training.state import GlobalState
from megatron.bridge.training.utils.packed_seq_utils import get_thd_cp_partition_indices
from megatron.bridge.training.utils.pg_utils import get_pg_collection

from .callbacks import LOSS_KEY
from .dataset import SOURCE_IDS


def source_key(name: str) -> str:
    """The reduction (and logged scalar) of one source's validation loss."""
    return f"{LOSS_KEY}/{name}"


class _SourceIdsTap:
    """The data iterator with SOURCE_IDS taken off each batch (Megatron-Bridge's get_batch sees what it saw before);
    the last batch's source ids, loss mask and packing stay here."""

    def __init__(self, batches):
        self.batches = batches
        self.batch: dict | None = None
        self.source_ids: torch.Tensor | None = None

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        self.batch = next(self.batches)
        self.source_ids = self.batch.get(SOURCE_IDS)
        return {key: value for key, value in self.batch.items() if key != SOURCE_IDS}


def _source_masks(tap: _SourceIdsTap, num_sources: int, cp_group) -> torch.Tensor:
    """[num_sources, tokens]: the loss mask kept to each source's tokens, on this context-parallel rank's tokens
    (sliced as Megatron-Bridge's get_batch slices a packed stream)."""
    ids, loss_mask = tap.source_ids, tap.batch["loss_mask"]
    if ids.shape != loss_mask.shape:
        raise ValueError(f"{SOURCE_IDS} of shape {tuple(ids.shape)} for a loss mask of shape {tuple(loss_mask.shape)}")
    recording = ids.is_cuda and torch.cuda.is_current_stream_capturing()  # no host read there: checked eagerly before
    if not recording and (int(ids.min()) < 0 or int(ids.max()) >= num_sources):
        raise ValueError(f"{SOURCE_IDS} outside the mixture's {num_sources} sources")
    masks = torch.stack([loss_mask.view(-1) * (ids.view(-1) == source) for source in range(num_sources)])
    if cp_group.size() > 1:  # TransformerEngine's partition runs on the GPU, where get_batch moved the stream
        masks = masks.cuda(non_blocking=True)
        indices = get_thd_cp_partition_indices(tap.batch["cu_seqlens_q"].view(-1), total_tokens=masks.size(1),
                                               cp_group=cp_group, device=masks.device)
        masks = masks.index_select(1, indices)
    return masks


def _with_source_losses(loss_func, keys: tuple[str, ...], source_masks: torch.Tensor, output_tensor):
    """Megatron-Bridge's loss and reductions, plus each source's [loss sum, trained tokens] under its key."""
    loss, num_tokens, reported = loss_func(output_tensor)
    source_masks = source_masks.to(num_tokens.device)
    for key, mask in zip(keys, source_masks):
        reported[key] = masked_next_token_loss(mask, output_tensor, check_for_nan_in_loss=False)[2][LOSS_KEY]
    return loss, num_tokens, reported


class SourceLossForwardStep:
    """Megatron-Bridge's GPT forward step; for a batch with source ids its loss function also reports each source's
    loss (every source on every such micro batch, [0, 0] where absent: evaluate() reduces the keys of its first)."""

    def __init__(self, source_names: tuple[str, ...]):
        self.keys = tuple(source_key(name) for name in source_names)

    def __call__(self, state: GlobalState, data_iterator, model, return_schedule_plan: bool = False):
        tap = _SourceIdsTap(data_iterator) if data_iterator is not None else None
        output, loss_func = forward_step(state, tap, model, return_schedule_plan)
        if tap is None or tap.source_ids is None:
            return output, loss_func
        masks = _source_masks(tap, len(self.keys), get_pg_collection(model).cp)
        return output, partial(_with_source_losses, loss_func, self.keys, masks)


class DropEmptySources(Callback):
    """After each evaluation: a source's 0 / 0 (no trained tokens of it were evaluated) is left out of the results
    Megatron-Bridge then logs. With a finite total every evaluated source's value is finite, so a NaN there can
    only be 0 / 0; with a non-finite total the values are reported as they are."""

    def __init__(self, source_names: tuple[str, ...]):
        self.keys = tuple(source_key(name) for name in source_names)

    def _drop_empty(self, results: dict | None) -> None:
        total = (results or {}).get(LOSS_KEY)
        if total is None or not bool(torch.isfinite(total)):
            return
        for key in self.keys:
            if key in results and bool(torch.isnan(results[key])):
                del results[key]

    def on_eval_end(self, context: CallbackContext) -> None:
        self._drop_empty(context.total_loss_dict)

    def on_test_end(self, context: CallbackContext) -> None:
        self._drop_empty(context.total_loss_dict)
