"""prepare_data: the train / valid / test rows of a run's data, built once and then served from the cache.

files -> documents (documents.py) -> split by sample (split.py) -> rows (packing.py) -> cache (cache.py)
-> memory-mapped PackedSplits (packed.py) and a DataReport (report.py).
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import ConfigError, PrimusConfig
from ..config.sections.data import DataConfig
from .cache import cache_folder, cache_key, load_cache, save_cache
from .documents import encode_documents
from .errors import DataError
from .findings import log_findings
from .packed import PackedSplit, pad_token_id
from .packing import layout_rows
from .readers import data_files
from .report import BuildCounts, DataReport, build_report
from .resolve import resolve_format, resolve_template
from .split import SPLIT_NAMES, split_documents
from .store import DocumentStore
from .templates import Template, get_template

log = logging.getLogger("primus_bridge")


@dataclass
class PreparedData:
    train: PackedSplit
    valid: PackedSplit
    test: PackedSplit
    report: DataReport


def _split_rows(store: DocumentStore, data: DataConfig) -> dict[str, np.ndarray]:
    arrays, lengths = {}, store.lengths()
    for name, docs in zip(SPLIT_NAMES, split_documents(store.ordinals, data.split_fractions(), data.seed)):
        offsets, row_docs = layout_rows(docs, lengths[docs], data.seq_length, data.packing)
        arrays[f"{name}_row_offsets"], arrays[f"{name}_row_docs"] = offsets, row_docs
    return arrays


def build(files: list[Path], dataset_format: str, template: Template, tokenizer, data: DataConfig
          ) -> tuple[dict[str, np.ndarray], DataReport]:
    counts = BuildCounts()
    store = encode_documents(files, dataset_format, template, tokenizer, data, counts)
    if not len(store):
        raise DataError(str(data.data_path), f"no usable samples: {counts.records_read} records read, "
                                             f"{sum(counts.skipped.values())} skipped as bad, "
                                             f"{sum(counts.dropped.values())} dropped", "empty data")
    arrays = {name: getattr(store, name) for name in DocumentStore.ARRAYS} | _split_rows(store, data)
    report = build_report([str(f) for f in files], dataset_format, template.name, data, counts, store, arrays,
                          tokenizer)
    return arrays, report


def _settings(data: DataConfig, dataset_format: str, template: str) -> dict:
    keys = ("seq_length", "packing", "train_on_prompt", "mask_history", "skip_bad_records", "split", "seed",
            "template_date")
    return {"dataset_format": dataset_format, "template": template} | {k: getattr(data, k) for k in keys}


def _loaded(arrays: dict[str, np.ndarray], meta: dict, folder: Path, hit: bool) -> PreparedData:
    store = DocumentStore(**{name: arrays[name] for name in DocumentStore.ARRAYS})
    seq_length, pad_id = meta["seq_length"], meta["pad_id"]
    splits = [PackedSplit(store, arrays[f"{name}_row_offsets"], arrays[f"{name}_row_docs"], seq_length, pad_id)
              for name in SPLIT_NAMES]
    report = DataReport.from_dict(meta["report"])
    report.cache_dir, report.cache_hit = str(folder), hit
    return PreparedData(*splits, report)


def prepare_data(cfg: PrimusConfig, tokenizer) -> PreparedData:
    """The train / valid / test rows of cfg.data, tokenized with `tokenizer` (from cache when unchanged)."""
    data = cfg.data
    if not data.data_path:
        raise ConfigError("data.data_path: not set; pass --data_path FILE_OR_FOLDER")
    files = data_files(data.data_path)
    dataset_format = resolve_format(data, files)
    choice = resolve_template(data, dataset_format, tokenizer, cfg.recipe)
    log.info("data: template %s (%s)", choice.name, choice.reason)
    template = get_template(choice.name, tokenizer, data)
    folder = cache_folder(data.cache_dir, cache_key(files, tokenizer, _settings(data, dataset_format, choice.name)))
    cached = load_cache(folder)
    if cached is not None:
        log.info("data: cache hit %s", folder)
        prepared = _with_reason(_loaded(*cached, folder, hit=True), choice.reason)
        report = prepared.report
        log_findings(report.dataset_format, report.unused_columns, report.placeholders)
        return prepared
    log.info("data: tokenizing %d file(s) as %s with template %s", len(files), dataset_format, choice.name)
    arrays, report = build(files, dataset_format, template, tokenizer, data)
    meta = {"report": report.to_dict(), "seq_length": data.seq_length, "pad_id": pad_token_id(tokenizer)}
    save_cache(folder, arrays, meta)
    cached = load_cache(folder)
    if cached is None:
        raise DataError(str(folder), "the data cache just written does not load; check the disk", "cache")
    return _with_reason(_loaded(*cached, folder, hit=False), choice.reason)


def _with_reason(prepared: PreparedData, reason: str) -> PreparedData:
    """The report says why the template was chosen (this run's reason, also on a cache hit)."""
    prepared.report.template_reason = reason
    return prepared
