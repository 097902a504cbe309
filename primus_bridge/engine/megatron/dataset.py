"""Megatron-Bridge dataset provider over the data pipeline's packed rows.

`finetune()` asks its `cfg.dataset` (a `DatasetProvider`) for train/valid/test datasets holding at
least the number of samples the schedule consumes. Each split is the pipeline's `PackedSplit`,
repeated epoch after epoch in a fresh seeded order. The `micro_batch_size` rows of a micro batch are
laid end to end as one packed stream ([1, micro_batch * seq_length]: Megatron's micro batch is 1,
its sequence micro_batch * seq_length, as Megatron does for packed SFT) with `cu_seqlens` marking
every document (and each row's trailing padding), so attention never crosses documents and RoPE
restarts per document.
Labels arrive already shifted (labels[i] is the target of position i), as Megatron's loss expects.
The valid and test streams of a data mixture also carry `source_ids`: each token's source, for the validation
loss per source (source_loss.py).
With `static_shapes` (a run recorded as a CUDA graph, cuda_graph.py) every stream has the same shapes: cu_seqlens
is padded to one entry per token plus one with empty documents at the end, and the streams carry no max_seqlen
(the forward step gives the graph a host constant instead).
"""

from dataclasses import dataclass, field

import numpy as np
import torch
from megatron.bridge.data.base import DatasetBuildContext, DatasetProvider
from torch.utils.data import Dataset

from ...data.batches import epoch_order

SOURCE_IDS = "source_ids"
"""The stream key of each token's data source (valid and test streams of a mixture)."""


class PackedStreams(Dataset):
    """`num_streams` samples, each `rows_per_stream` rows of `split` laid end to end.

    The rows are taken in order from an endless sequence of epochs; each epoch visits every row once,
    in its own seeded order. Megatron's micro batch is one stream ([1, rows_per_stream * seq_length]).
    `with_source_ids`: each stream also holds SOURCE_IDS, the source index (into split.source_names) of every token.
    """

    def __init__(self, split, num_streams: int, rows_per_stream: int, seed: int, with_source_ids: bool = False,
                 static_shapes: bool = False):
        if len(split) == 0:
            raise ValueError("the split has no rows; add data or change data.split")
        self.split = split
        self.rows_per_stream = rows_per_stream
        self.num_streams = max(int(num_streams), -(-len(split) // rows_per_stream))
        self.seed = seed
        self.with_source_ids = with_source_ids
        self.static_shapes = static_shapes
        self._orders: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.num_streams

    def row_index(self, position: int) -> int:
        """Which split row sits at `position` of the endless epoch sequence."""
        epoch, offset = divmod(position, len(self.split))
        if epoch not in self._orders:
            self._orders[epoch] = epoch_order(len(self.split), self.seed, epoch)  # the hf engine's order too
        return int(self._orders[epoch][offset])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        first = index * self.rows_per_stream
        indices = [self.row_index(first + k) for k in range(self.rows_per_stream)]
        stream = pack_rows([self.split[i] for i in indices], self.static_shapes)
        if self.with_source_ids:
            sources = torch.as_tensor(self.split.row_sources(indices), dtype=torch.int32)
            stream[SOURCE_IDS] = sources.repeat_interleave(self.split.seq_length)
        return stream

    @staticmethod
    def collate_fn(streams: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Megatron's micro batch is one stream: add the batch dimension of 1."""
        if len(streams) != 1:
            raise ValueError(f"packed streams: micro batch of {len(streams)} streams; the engine sets "
                             "Megatron's micro_batch_size to 1 (one stream holds training.micro_batch_size rows)")
        return {key: value.unsqueeze(0) for key, value in streams[0].items()}


def _as_tensor(values, dtype) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=dtype))


def pack_rows(rows, static_shapes: bool = False) -> dict[str, torch.Tensor]:
    """PackedRows -> one stream with Megatron's THD metadata (cu_seqlens_q/kv, max_seqlen_q/kv). `static_shapes`:
    cu_seqlens padded to tokens + 1 entries with the total (empty documents after the last), no max_seqlen."""
    stream = {
        "tokens": torch.cat([_as_tensor(r.input_ids, np.int64) for r in rows]),
        "labels": torch.cat([_as_tensor(r.labels, np.int64) for r in rows]),
        "loss_mask": torch.cat([_as_tensor(r.loss_mask, np.float32) for r in rows]),
        "position_ids": torch.cat([_as_tensor(r.position_ids, np.int64) for r in rows]),
    }
    seq_lens = torch.cat([_as_tensor(r.seq_lens, np.int32) for r in rows])
    if int(seq_lens.sum()) != stream["tokens"].numel():
        raise ValueError(f"packed rows: seq_lens add up to {int(seq_lens.sum())} tokens but the rows hold "
                         f"{stream['tokens'].numel()}; each row's seq_lens must cover the whole row")
    cu_seqlens = torch.zeros(seq_lens.numel() + 1, dtype=torch.int32)
    cu_seqlens[1:] = torch.cumsum(seq_lens, dim=0)
    if static_shapes:
        total = stream["tokens"].numel()
        cu_seqlens = torch.nn.functional.pad(cu_seqlens, (0, total + 1 - cu_seqlens.numel()), value=total)
        return {**stream, "cu_seqlens_q": cu_seqlens, "cu_seqlens_kv": cu_seqlens}
    longest = torch.tensor(int(seq_lens.max()), dtype=torch.int32)
    return {**stream, "cu_seqlens_q": cu_seqlens, "cu_seqlens_kv": cu_seqlens,
            "max_seqlen_q": longest, "max_seqlen_kv": longest}


@dataclass(kw_only=True)
class PackedRowsProvider(DatasetProvider):
    """`cfg.dataset` for finetune(): declarative fields only, so the run's saved config stays readable."""

    primus_config: dict = field(default_factory=dict)
    """The run's resolved primus-bridge config (`PrimusConfig.model_dump()`); the data section drives the build."""
    rows_per_stream: int = 1
    """training.micro_batch_size: rows laid end to end in one Megatron micro batch."""
    static_shapes: bool = False
    """The same shapes for every stream (model.cuda_graph; see the module doc)."""
    seed: int = 1234
    dataloader_type: str = "single"

    def build_datasets(self, context: DatasetBuildContext):
        cfg, prepared = _prepare_on_rank0_first(self.primus_config)
        counts = (context.train_samples, context.valid_samples, context.test_samples)
        splits = (prepared.train, prepared.valid, prepared.test)
        evaluated = (False, True, True)  # the evaluations report their loss per source too
        return tuple(
            PackedStreams(split, count, self.rows_per_stream, self.seed + offset,
                          with_source_ids=is_evaluated and _has_sources(split, cfg), static_shapes=self.static_shapes)
            if count and split is not None and len(split) else None
            for offset, (split, count, is_evaluated) in enumerate(zip(splits, counts, evaluated))
        )


def mixture_source_names(cfg) -> tuple[str, ...]:
    """The sources of a data mixture in data.data_path order (what `source_ids` index); () for one source."""
    names = tuple(source.name for source in cfg.data.sources()) if cfg.data.is_mixture() else ()
    return names if len(names) > 1 else ()


def _has_sources(split, cfg) -> bool:
    """Whether the split's rows come from several sources (named and ordered as in the config: checked)."""
    names = mixture_source_names(cfg)
    if names and split.source_names != names:
        raise ValueError(f"the data split names its sources {split.source_names}, the config {names}: "
                         "the source ids would be read against the wrong names")
    return bool(names)


def _prepare_on_rank0_first(config_dict: dict):
    """(config, prepared data): rank 0 tokenizes and fills the data cache; the other ranks then read that cache."""
    import torch.distributed as dist

    from ...config import PrimusConfig
    from ...data import prepare_data
    from ...data.tokenizer import load_tokenizer

    cfg = PrimusConfig.model_validate(config_dict)
    tokenizer = load_tokenizer(cfg)
    distributed = dist.is_available() and dist.is_initialized()
    if distributed and dist.get_rank() != 0:
        dist.barrier()
    prepared = prepare_data(cfg, tokenizer)
    if distributed and dist.get_rank() == 0:
        dist.barrier()
    return cfg, prepared
