"""prepare_data: the train / valid / test rows of a run's data, built once and then served from the cache.

files -> documents (documents.py) -> split by sample (split.py) -> rows (packing.py) -> cache (cache.py)
-> memory-mapped PackedSplits (packed.py) and a DataReport (report.py). A mixture (data.data_path as a list)
does the same per source and draws the train rows to its weights (mixture.py).
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
from .mixture import SourceDraw, check_pass_size, draw, interleaved_rows, pass_targets, train_rows
from .packed import PackedSplit, pad_token_id
from .packing import layout_rows
from .report import BuildCounts, DataReport, SourceReport, build_report
from .resolve import SourcePlan, agreed_template, resolve_sources
from .split import SPLIT_NAMES, split_documents
from .store import DocumentStore, concat_stores
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


def _no_samples(where: str, counts: BuildCounts) -> DataError:
    return DataError(where, f"no usable samples: {counts.records_read} records read, "
                            f"{sum(counts.skipped.values())} skipped as bad, "
                            f"{sum(counts.dropped.values())} dropped", "empty data")


def build(files: list[Path], dataset_format: str, template: Template, tokenizer, data: DataConfig
          ) -> tuple[dict[str, np.ndarray], DataReport]:
    counts = BuildCounts()
    store = encode_documents(files, dataset_format, template, tokenizer, data, counts)
    if not len(store):
        raise _no_samples(str(data.data_path), counts)
    arrays = {name: getattr(store, name) for name in DocumentStore.ARRAYS} | _split_rows(store, data)
    report = build_report([str(f) for f in files], dataset_format, template.name, data, counts, store, arrays,
                          tokenizer)
    return arrays, report


def _encoded_sources(plans: list[SourcePlan], template: Template, tokenizer
                     ) -> tuple[list[DocumentStore], list[BuildCounts]]:
    stores, counts = [], []
    for index, plan in enumerate(plans):
        log.info("data: source %s: tokenizing %d file(s) as %s", plan.source.name, len(plan.files),
                 plan.dataset_format)
        source_counts = BuildCounts()
        store = encode_documents(plan.files, plan.dataset_format, template, tokenizer, plan.data, source_counts)
        if not len(store):
            raise _no_samples(f"data.data_path[{index}] ({plan.source.path})", source_counts)
        stores.append(store)
        counts.append(source_counts)
    return stores, counts


def _source_splits(store: DocumentStore, first: int, count: int, data: DataConfig, where: str
                   ) -> list[np.ndarray]:
    """One source's train / valid / test store indices (its documents are first .. first + count - 1)."""
    try:
        return [docs + first for docs in split_documents(store.ordinals[first:first + count],
                                                         data.split_fractions(), data.seed)]
    except DataError as err:
        raise DataError(f"{where}: {err.where}", err.problem, err.kind) from None


def build_mixture(plans: list[SourcePlan], template: Template, tokenizer, data: DataConfig
                  ) -> tuple[dict[str, np.ndarray], DataReport]:
    """Every source tokenized and split on its own; the train rows drawn to the mixture's weights."""
    stores, counts = _encoded_sources(plans, template, tokenizer)
    store = concat_stores(stores)
    source_doc_offsets = np.concatenate([[0], np.cumsum([len(s) for s in stores])]).astype(np.int64)
    splits = [_source_splits(store, int(source_doc_offsets[i]), len(stores[i]), data, f"data.data_path[{i}]")
              for i in range(len(plans))]
    sources = [plan.source for plan in plans]
    available = [len(train) for train, _, _ in splits]
    targets = pass_targets(sources, available)
    for index, (n, target) in enumerate(zip(available, targets)):
        if target and not n:
            raise DataError(f"data.data_path[{index}].samples", "the source has no training samples to draw from; "
                                                                "give data.split a train share", "empty data")
    check_pass_size(sources, available, targets)
    draws = [draw(train, store.ordinals, target, data.seed, index) if target else SourceDraw(train, 0, train[:0])
             for index, ((train, _, _), target) in enumerate(zip(splits, targets))]
    lengths = store.lengths()
    arrays = {name: getattr(store, name) for name in DocumentStore.ARRAYS}
    arrays["source_doc_offsets"] = source_doc_offsets
    arrays["train_row_offsets"], arrays["train_row_docs"] = train_rows(draws, lengths, data.seq_length, data.packing)
    for split_index, name in enumerate(SPLIT_NAMES[1:], 1):
        per_source = [layout_rows(s[split_index], lengths[s[split_index]], data.seq_length, data.packing)
                      for s in splits]
        arrays[f"{name}_row_offsets"], arrays[f"{name}_row_docs"] = interleaved_rows(per_source)
    total = BuildCounts()
    for source_counts in counts:
        total.add(source_counts)
    formats = "+".join(dict.fromkeys(plan.dataset_format for plan in plans))
    report = build_report([str(f) for plan in plans for f in plan.files], formats, template.name, data, total,
                          store, arrays, tokenizer)
    report.sources = [_source_report(plan, stores[i], counts[i], draws[i], lengths, len(splits[i][1]),
                                     sum(targets)) for i, plan in enumerate(plans)]
    return arrays, report


def _source_report(plan: SourcePlan, store: DocumentStore, counts: BuildCounts, drawn: SourceDraw,
                   lengths: np.ndarray, valid_samples: int, pass_samples: int) -> SourceReport:
    train_tokens = drawn.copies * int(lengths[drawn.docs].sum()) + int(lengths[drawn.remainder].sum())
    return SourceReport(
        name=plan.source.name, path=plan.source.path, dataset_format=plan.dataset_format,
        weight=plan.source.weight, samples=plan.source.samples, records_read=counts.records_read,
        samples_kept=len(store), tokens=int(store.lengths().sum()), train_samples=drawn.samples,
        train_tokens=train_tokens, share=drawn.samples / pass_samples if pass_samples else 0.0,
        repeats=drawn.samples / len(drawn.docs) if len(drawn.docs) else 0.0, valid_samples=valid_samples,
    )


def _settings(data: DataConfig, dataset_format: str, template: str) -> dict:
    keys = ("seq_length", "packing", "train_on_prompt", "mask_history", "skip_bad_records", "split", "seed",
            "template_date")
    return {"dataset_format": dataset_format, "template": template} | {k: getattr(data, k) for k in keys}


def _mixture_settings(data: DataConfig, plans: list[SourcePlan], template: str) -> dict:
    """The cache key's settings of a mixture: every source's name, file count, format and weight or count."""
    sources = [{"name": p.source.name, "files": len(p.files), "dataset_format": p.dataset_format,
                "weight": p.source.weight, "samples": p.source.samples} for p in plans]
    return _settings(data, "mixture", template) | {"sources": sources}


def _loaded(arrays: dict[str, np.ndarray], meta: dict, folder: Path, hit: bool, names: list[str]) -> PreparedData:
    store = DocumentStore(**{name: arrays[name] for name in DocumentStore.ARRAYS})
    seq_length, pad_id = meta["seq_length"], meta["pad_id"]
    source_doc_offsets = arrays.get("source_doc_offsets")
    splits = [PackedSplit(store, arrays[f"{name}_row_offsets"], arrays[f"{name}_row_docs"], seq_length, pad_id,
                          tuple(names), source_doc_offsets)
              for name in SPLIT_NAMES]
    report = DataReport.from_dict(meta["report"])
    report.cache_dir, report.cache_hit = str(folder), hit
    return PreparedData(*splits, report)


def prepare_data(cfg: PrimusConfig, tokenizer) -> PreparedData:
    """The train / valid / test rows of cfg.data, tokenized with `tokenizer` (from cache when unchanged)."""
    data = cfg.data
    if not data.data_path:
        raise ConfigError("data.data_path: not set; pass --data_path FILE_OR_FOLDER")
    plans = resolve_sources(data, tokenizer, cfg.recipe)
    choice = agreed_template(plans)
    log.info("data: template %s (%s)", choice.name, choice.reason)
    template = get_template(choice.name, tokenizer, data)
    files, names = [f for plan in plans for f in plan.files], [plan.source.name for plan in plans]
    settings = _mixture_settings(data, plans, choice.name) if data.is_mixture() else \
        _settings(data, plans[0].dataset_format, choice.name)
    folder = cache_folder(data.cache_dir, cache_key(files, tokenizer, settings))
    cached = load_cache(folder)
    if cached is not None:
        log.info("data: cache hit %s", folder)
        prepared = _with_reason(_loaded(*cached, folder, True, names), choice.reason)
        report = prepared.report
        log_findings(report.dataset_format, report.unused_columns, report.placeholders)
        return prepared
    if data.is_mixture():
        log.info("data: mixing %d sources with template %s", len(plans), choice.name)
        arrays, report = build_mixture(plans, template, tokenizer, data)
    else:
        log.info("data: tokenizing %d file(s) as %s with template %s", len(files), plans[0].dataset_format,
                 choice.name)
        arrays, report = build(files, plans[0].dataset_format, template, tokenizer, data)
    meta = {"report": report.to_dict(), "seq_length": data.seq_length, "pad_id": pad_token_id(tokenizer)}
    save_cache(folder, arrays, meta)
    cached = load_cache(folder)
    if cached is None:
        raise DataError(str(folder), "the data cache just written does not load; check the disk", "cache")
    return _with_reason(_loaded(*cached, folder, False, names), choice.reason)


def _with_reason(prepared: PreparedData, reason: str) -> PreparedData:
    """The report says why the template was chosen (this run's reason, also on a cache hit)."""
    prepared.report.template_reason = reason
    return prepared
