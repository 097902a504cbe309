"""Files -> records -> conversations -> rendered text -> tokens and trained spans, into a DocumentStore.

Records stream through in chunks: one batched tokenizer call per chunk, run in a worker thread, with the
cyclic garbage collector paused (gc_paused).
"""

import contextlib
import gc
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path

from ..config.sections.data import DataConfig
from .encode import EncodedSample, SampleEncoder
from .errors import SKIP_HINT, DataError
from .formats import NORMALIZERS, unused_columns
from .readers import read_records
from .records import Conversation, RawRecord
from .report import BuildCounts
from .store import DocumentStore, StoreBuilder
from .templates import TEMPLATES, Rendered, Template

CHUNK_SIZE = 2048


def _rendered(records: Iterator[RawRecord], dataset_format: str, template: Template, skip: bool,
              counts: BuildCounts) -> Iterator[tuple[Conversation, Rendered]]:
    normalize, renders_tools = NORMALIZERS[dataset_format], getattr(template, "supports_tools", False)
    for raw in records:
        counts.records_read += 1
        try:
            if raw.problem is not None:
                raise DataError(raw.where, raw.problem, raw.kind or "bad record")
            conversation = normalize(raw)
            if not renders_tools and conversation.uses_tools():
                raise _tools_refused(conversation.where, template)
            rendered = template.render(conversation)
            counts.findings.note(raw.where, unused_columns(dataset_format, raw.value), conversation)
            yield conversation, rendered
        except DataError as err:
            if not skip:
                raise DataError(err.where, f"{err.problem}; {SKIP_HINT}", err.kind) from None
            counts.skip(str(err), err.kind)


def _tools_refused(where: str, template: Template) -> DataError:
    able = [name for name, cls in TEMPLATES.items() if getattr(cls, "supports_tools", False)]
    fix = (f"use a template that renders them: {', '.join(able)} (data.chat_format / --chat_format)" if able
           else "no template renders tool calls")
    return DataError(where, f"the record has tools or tool calls, and template {template.name!r} cannot render "
                            f"them; {fix}", "tools unsupported")


@contextlib.contextmanager
def gc_paused():
    """No cyclic garbage collection while records stream through: the pipeline makes no reference cycles, and
    the collector's passes over the many live objects (chunks of records, encodings) cost a tenth of the CPU."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


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
        kept = []
        for sample in samples:
            if sample.truncation:
                counts.truncate(sample.truncation)
            if sample.spans:
                kept.append(sample)
            else:
                counts.drop("no trainable tokens")
        builder.add_all(kept)

    with gc_paused(), contextlib.closing(read_records(files)) as records, ThreadPoolExecutor(max_workers=1) as worker:
        pending = None
        for chunk in _chunks(_rendered(records, dataset_format, template, data.skip_bad_records, counts), CHUNK_SIZE):
            submitted = (chunk, worker.submit(encoder.tokenize, chunk))
            if pending is not None:
                keep(encoder.finish(pending[0], pending[1].result()))
            pending = submitted
        if pending is not None:
            keep(encoder.finish(pending[0], pending[1].result()))
    counts.findings.log(dataset_format)
    return builder.build()
