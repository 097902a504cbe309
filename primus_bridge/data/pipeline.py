"""prepare_data: files -> records -> conversations -> rendered text -> tokens + loss spans -> split -> rows.

Records stream through in chunks (one batched tokenizer call per chunk); the result is cached on disk and
memory-mapped, so a second run with the same inputs only loads it.
"""

import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from ..config import ConfigError, PrimusConfig
from ..config.sections.data import DataConfig
from .cache import cache_folder, cache_key, load_cache, save_cache
from .encode import EncodedSample, SampleEncoder
from .errors import DataError
from .formats import NORMALIZERS, detect_format
from .packed import PackedSplit
from .packing import layout_rows
from .readers import data_files, read_records
from .records import Conversation, RawRecord
from .report import BuildCounts, DataReport, SplitReport, length_histogram, marked_sample
from .split import SPLIT_NAMES, split_documents
from .store import DocumentStore, StoreBuilder
from .templates import Rendered, Template, get_template

CHUNK_SIZE = 2048
REPORT_SAMPLES = 2
SKIP_HINT = "fix the record, or set data.skip_bad_records: true (--skip_bad_records) to skip and count bad records"

log = logging.getLogger("primus_bridge")


@dataclass
class PreparedData:
    train: PackedSplit
    valid: PackedSplit
    test: PackedSplit
    report: DataReport


def resolve_format(data: DataConfig, files: list[Path]) -> str:
    """data.dataset_format, or for `auto` the format of the first readable record."""
    if data.dataset_format != "auto":
        return data.dataset_format
    with contextlib.closing(read_records(files)) as records:
        for raw in records:
            if raw.problem is None:
                return detect_format(raw)
            if not data.skip_bad_records:
                raise DataError(raw.where, f"{raw.problem}; {SKIP_HINT}", raw.kind or "bad record")
    raise DataError(str(data.data_path), "no records found to detect the format from", "empty data")


def resolve_template(data: DataConfig, dataset_format: str, tokenizer) -> str:
    """alpaca data: prompt_template (default alpaca); chat data: chat_format, else prompt_template, else the
    tokenizer's own chat_template."""
    if dataset_format == "alpaca":
        return data.prompt_template or data.chat_format or "alpaca"
    name = data.template_for_chat()
    if name:
        return name
    if getattr(tokenizer, "chat_template", None):
        return "tokenizer"
    raise ConfigError("data.chat_format: chat data needs a template and the tokenizer has no chat_template; "
                      "pass --chat_format chatml (or llama3, qwen2, mistral, alpaca)")


def pad_token_id(tokenizer) -> int:
    """Padding is masked (label -100) and is its own segment, so its id only has to be a valid token."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0


def _rendered(records: Iterator[RawRecord], dataset_format: str, template: Template, skip: bool,
              counts: BuildCounts) -> Iterator[tuple[Conversation, Rendered]]:
    normalize = NORMALIZERS[dataset_format]
    for raw in records:
        counts.records_read += 1
        try:
            if raw.problem is not None:
                raise DataError(raw.where, raw.problem, raw.kind or "bad record")
            conversation = normalize(raw)
            yield conversation, template.render(conversation)
        except DataError as err:
            if not skip:
                raise DataError(err.where, f"{err.problem}; {SKIP_HINT}", err.kind) from None
            counts.skip(str(err), err.kind)


def _chunks(items: Iterator, size: int) -> Iterator[list]:
    while chunk := list(islice(items, size)):
        yield chunk


def encode_documents(files: list[Path], dataset_format: str, template: Template, tokenizer, data: DataConfig,
                     counts: BuildCounts) -> DocumentStore:
    """Every kept sample's tokens and trained spans; samples with nothing to train are counted, not kept.

    Chunk k+1 is tokenized in a worker thread while this thread renders the chunk after it and finishes
    chunk k, so the Rust tokenizer and the Python steps overlap.
    """
    encoder, builder = SampleEncoder(tokenizer, template, data), StoreBuilder()

    def keep(samples: list[EncodedSample]) -> None:
        for sample in samples:
            if sample.truncation:
                counts.truncate(sample.truncation)
            if sample.spans:
                builder.add(sample)
            else:
                counts.drop("no trainable tokens")

    with contextlib.closing(read_records(files)) as records, ThreadPoolExecutor(max_workers=1) as worker:
        pending = None
        for chunk in _chunks(_rendered(records, dataset_format, template, data.skip_bad_records, counts), CHUNK_SIZE):
            submitted = (chunk, worker.submit(encoder.tokenize, chunk))
            if pending is not None:
                keep(encoder.finish(pending[0], pending[1].result()))
            pending = submitted
        if pending is not None:
            keep(encoder.finish(pending[0], pending[1].result()))
    return builder.build()


def _split_rows(store: DocumentStore, data: DataConfig) -> dict[str, np.ndarray]:
    arrays, lengths = {}, store.lengths()
    for name, docs in zip(SPLIT_NAMES, split_documents(store.ordinals, data.split_fractions(), data.seed)):
        offsets, row_docs = layout_rows(docs, lengths[docs], data.seq_length, data.packing)
        arrays[f"{name}_row_offsets"], arrays[f"{name}_row_docs"] = offsets, row_docs
    return arrays


def _split_report(arrays: dict[str, np.ndarray], lengths: np.ndarray, seq_length: int) -> dict[str, SplitReport]:
    out = {}
    for name in SPLIT_NAMES:
        rows, docs = len(arrays[f"{name}_row_offsets"]) - 1, arrays[f"{name}_row_docs"]
        tokens = int(lengths[docs].sum())
        out[name] = SplitReport(len(docs), rows, tokens, tokens / (rows * seq_length) if rows else 0.0)
    return out


def build_report(files: list[Path], dataset_format: str, template: str, data: DataConfig, counts: BuildCounts,
                 store: DocumentStore, arrays: dict[str, np.ndarray], tokenizer) -> DataReport:
    lengths, trainable = store.lengths(), int(store.trained_counts().sum())
    splits = _split_report(arrays, lengths, data.seq_length)
    rows = sum(s.rows for s in splits.values())
    return DataReport(
        data_files=[str(f) for f in files], dataset_format=dataset_format, template=template,
        seq_length=data.seq_length, packing=data.packing, records_read=counts.records_read,
        samples_kept=len(store), skipped=counts.skipped, skipped_examples=counts.skipped_examples,
        dropped=counts.dropped, truncated=counts.truncated, tokens=int(lengths.sum()), trainable_tokens=trainable,
        trainable_pct=100 * trainable / max(int(lengths.sum()), 1),
        packing_efficiency=int(lengths.sum()) / (rows * data.seq_length) if rows else 0.0,
        splits=splits, length_histogram=length_histogram(lengths, data.seq_length),
        samples=[marked_sample(store, d, tokenizer) for d in range(min(REPORT_SAMPLES, len(store)))],
    )


def build(files: list[Path], dataset_format: str, template: Template, tokenizer, data: DataConfig
          ) -> tuple[dict[str, np.ndarray], DataReport]:
    counts = BuildCounts()
    store = encode_documents(files, dataset_format, template, tokenizer, data, counts)
    if not len(store):
        raise DataError(str(data.data_path), f"no usable samples: {counts.records_read} records read, skipped "
                                             f"{counts.skipped or 0}, dropped {counts.dropped or 0}", "empty data")
    arrays = {name: getattr(store, name) for name in DocumentStore.ARRAYS} | _split_rows(store, data)
    report = build_report(files, dataset_format, template.name, data, counts, store, arrays, tokenizer)
    return arrays, report


def _settings(data: DataConfig, dataset_format: str, template: str) -> dict:
    keys = ("seq_length", "packing", "train_on_prompt", "mask_history", "skip_bad_records", "split", "seed")
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
    template_name = resolve_template(data, dataset_format, tokenizer)
    template = get_template(template_name, tokenizer)
    folder = cache_folder(data.cache_dir, cache_key(files, tokenizer, _settings(data, dataset_format, template_name)))
    cached = load_cache(folder)
    if cached is not None:
        log.info("data: cache hit %s", folder)
        return _loaded(*cached, folder, hit=True)
    log.info("data: tokenizing %d file(s) as %s with template %s", len(files), dataset_format, template_name)
    arrays, report = build(files, dataset_format, template, tokenizer, data)
    meta = {"report": report.to_dict(), "seq_length": data.seq_length, "pad_id": pad_token_id(tokenizer)}
    save_cache(folder, arrays, meta)
    cached = load_cache(folder)
    if cached is None:
        raise DataError(str(folder), "the data cache just written does not load; check the disk", "cache")
    return _loaded(*cached, folder, hit=False)
