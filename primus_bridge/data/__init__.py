"""Instruction and chat data: readers, prompt templates, loss masks, truncation, packing, cache.

    tokenizer = load_tokenizer(cfg)
    data = prepare_data(cfg, tokenizer)          # .train / .valid / .test (PackedSplit), .report
    for batch in iterate_batches(data.train, micro_batch_size=4, seed=cfg.data.seed): ...
"""

from .batches import iterate_batches
from .errors import DataError
from .packed import IGNORE_INDEX, PackedRow, PackedSplit
from .pipeline import PreparedData, prepare_data
from .report import DataReport
from .tokenizer import load_tokenizer

__all__ = [
    "IGNORE_INDEX",
    "DataError",
    "DataReport",
    "PackedRow",
    "PackedSplit",
    "PreparedData",
    "iterate_batches",
    "load_tokenizer",
    "prepare_data",
]
