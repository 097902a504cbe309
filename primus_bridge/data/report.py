"""What the pipeline did to the data: counts, trainable share, truncation, packing, and marked samples."""

from dataclasses import asdict, dataclass, field

import numpy as np

from ..config.sections.data import DataConfig
from .findings import Findings
from .split import SPLIT_NAMES
from .store import DocumentStore

TRAIN_OPEN, TRAIN_CLOSE = "⟦", "⟧"
HISTOGRAM_BINS = 8
MAX_SKIP_EXAMPLES = 20
REPORT_SAMPLES = 2


@dataclass
class SplitReport:
    samples: int
    rows: int
    tokens: int
    packing_efficiency: float
    """Real tokens / (rows x seq_length)."""


@dataclass
class SourceReport:
    """One source of a data mixture."""

    name: str
    path: str
    dataset_format: str
    weight: float | None
    samples: int | None
    """The sample count the config asks per pass (data.data_path[i].samples), if any."""
    records_read: int
    samples_kept: int
    tokens: int
    """Tokens of the kept samples."""
    train_samples: int
    """Training samples one pass over the mixture takes from this source (repeats counted)."""
    train_tokens: int
    share: float
    """train_samples / all sources' train_samples."""
    repeats: float
    """train_samples / this source's own train-split samples (above 1: upsampled, below: a subset)."""
    valid_samples: int


@dataclass
class DataReport:
    data_files: list[str]
    dataset_format: str
    template: str
    seq_length: int
    packing: bool
    records_read: int = 0
    samples_kept: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    """Bad records skipped (data.skip_bad_records), by kind."""
    skipped_examples: list[str] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    """Parsed samples not trained, by reason (e.g. no trainable tokens left)."""
    truncated: dict[str, int] = field(default_factory=dict)
    """Samples cut to fit seq_length, by the step that made them fit (one then left with nothing to train is
    also counted under dropped)."""
    tokens: int = 0
    trainable_tokens: int = 0
    trainable_pct: float = 0.0
    packing_efficiency: float = 0.0
    splits: dict[str, SplitReport] = field(default_factory=dict)
    length_histogram: list[dict] = field(default_factory=list)
    """Sample lengths in tokens: [{"from": a, "to": b, "count": n}], bins over [0, seq_length]."""
    samples: list[str] = field(default_factory=list)
    """Rendered samples (two; `primus-bridge data --samples N`: N) with the trained spans between ⟦ and ⟧."""
    unused_columns: list[dict] = field(default_factory=list)
    """Columns the format does not read: [{"file", "column", "records", "first": "file:line"}]."""
    placeholders: list[dict] = field(default_factory=list)
    """Records whose text holds a `{{name}}` placeholder, per file: [{"file", "records", "first", "example"}]."""
    cache_dir: str = ""
    cache_hit: bool = False
    template_reason: str = ""
    """Why the template was chosen: the config key that names it, or what data.prompt_template: auto found."""
    sources: list[SourceReport] = field(default_factory=list)
    """Per source of a mixture (data.data_path as a list): records, tokens and share; empty for one path."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "DataReport":
        splits = {name: SplitReport(**s) for name, s in values.get("splits", {}).items()}
        sources = [SourceReport(**s) for s in values.get("sources", [])]
        return cls(**{**values, "splits": splits, "sources": sources})


class BuildCounts:
    """Counters filled while records stream through the pipeline."""

    def __init__(self):
        self.records_read, self.skipped, self.dropped, self.truncated = 0, {}, {}, {}
        self.skipped_examples: list[str] = []
        self.findings = Findings()

    def skip(self, message: str, kind: str) -> None:
        self.skipped[kind] = self.skipped.get(kind, 0) + 1
        if len(self.skipped_examples) < MAX_SKIP_EXAMPLES:
            self.skipped_examples.append(message)

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def truncate(self, kind: str) -> None:
        self.truncated[kind] = self.truncated.get(kind, 0) + 1

    def add(self, other: "BuildCounts") -> None:
        """Add another source's counts to these."""
        self.records_read += other.records_read
        for mine, theirs in ((self.skipped, other.skipped), (self.dropped, other.dropped),
                             (self.truncated, other.truncated)):
            for key, count in theirs.items():
                mine[key] = mine.get(key, 0) + count
        room = MAX_SKIP_EXAMPLES - len(self.skipped_examples)
        self.skipped_examples += other.skipped_examples[:max(room, 0)]
        for key, (count, first) in other.findings.columns.items():
            self.findings.columns.setdefault(key, [0, first])[0] += count
        for path, (count, first, example) in other.findings.placeholders.items():
            self.findings.placeholders.setdefault(path, [0, first, example])[0] += count


def length_histogram(lengths: np.ndarray, seq_length: int) -> list[dict]:
    edges = np.linspace(0, seq_length, HISTOGRAM_BINS + 1).round().astype(int)
    counts, _ = np.histogram(lengths, bins=edges)
    return [{"from": int(edges[i]) + (1 if i else 0), "to": int(edges[i + 1]), "count": int(c)}
            for i, c in enumerate(counts)]


def marked_samples(store: DocumentStore, tokenizer, count: int = REPORT_SAMPLES) -> list[str]:
    """The first `count` documents, marked as marked_sample does."""
    return [marked_sample(store, doc, tokenizer) for doc in range(min(count, len(store)))]


def marked_sample(store: DocumentStore, doc: int, tokenizer) -> str:
    """Document `doc` decoded, with every trained token between ⟦ and ⟧."""
    ids, spans = store.document(doc)
    ids = np.asarray(ids).tolist()
    pieces, cursor = [], 0
    for start, end in np.asarray(spans).tolist():
        first, stop = start + 1, end + 1
        pieces.append(tokenizer.decode(ids[cursor:first], skip_special_tokens=False))
        pieces.append(TRAIN_OPEN + tokenizer.decode(ids[first:stop], skip_special_tokens=False) + TRAIN_CLOSE)
        cursor = stop
    pieces.append(tokenizer.decode(ids[cursor:], skip_special_tokens=False))
    return "".join(pieces)


def _split_report(arrays: dict[str, np.ndarray], lengths: np.ndarray, seq_length: int) -> dict[str, SplitReport]:
    out = {}
    for name in SPLIT_NAMES:
        rows, docs = len(arrays[f"{name}_row_offsets"]) - 1, arrays[f"{name}_row_docs"]
        tokens = int(lengths[docs].sum())
        out[name] = SplitReport(len(docs), rows, tokens, tokens / (rows * seq_length) if rows else 0.0)
    return out


def build_report(files: list[str], dataset_format: str, template: str, data: DataConfig, counts: BuildCounts,
                 store: DocumentStore, arrays: dict[str, np.ndarray], tokenizer) -> DataReport:
    lengths, trainable = store.lengths(), int(store.trained_counts().sum())
    splits = _split_report(arrays, lengths, data.seq_length)
    rows = sum(s.rows for s in splits.values())
    return DataReport(
        data_files=files, dataset_format=dataset_format, template=template,
        seq_length=data.seq_length, packing=data.packing, records_read=counts.records_read,
        samples_kept=len(store), skipped=counts.skipped, skipped_examples=counts.skipped_examples,
        dropped=counts.dropped, truncated=counts.truncated, tokens=int(lengths.sum()), trainable_tokens=trainable,
        trainable_pct=100 * trainable / max(int(lengths.sum()), 1),
        packing_efficiency=sum(s.tokens for s in splits.values()) / (rows * data.seq_length) if rows else 0.0,
        splits=splits, length_histogram=length_histogram(lengths, data.seq_length),
        samples=marked_samples(store, tokenizer), unused_columns=counts.findings.unused_columns(),
        placeholders=counts.findings.placeholder_records(),
    )


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _counts(values: dict[str, int]) -> str:
    total = sum(values.values())
    return f"{total}" + (f"  ({', '.join(f'{k}: {v}' for k, v in sorted(values.items()))})" if total else "")


def format_text(report: DataReport) -> str:
    """The report as aligned lines for a terminal."""
    files = report.data_files[0] if len(report.data_files) == 1 else f"{len(report.data_files)} files"
    lines = [
        f"data              {files}",
        f"format / template {report.dataset_format} / {report.template}   seq_length {report.seq_length}"
        f"   packing {'on' if report.packing else 'off'}",
        f"template from     {report.template_reason or 'unknown'}",
        f"records read      {report.records_read}",
        f"samples kept      {report.samples_kept}",
        f"skipped (bad)     {_counts(report.skipped)}",
        *[f"                  {example}" for example in report.skipped_examples],
        f"dropped           {_counts(report.dropped)}",
        f"truncated         {_counts(report.truncated)}",
        *_finding_lines(report),
        f"tokens            {report.tokens}   trainable {report.trainable_tokens} ({_pct(report.trainable_pct / 100)})",
        f"packing           efficiency {_pct(report.packing_efficiency)}",
    ]
    for name, split in report.splits.items():
        lines.append(f"  {name:<6}          {split.samples} samples -> {split.rows} rows, {split.tokens} tokens, "
                     f"efficiency {_pct(split.packing_efficiency)}")
    lines += _source_lines(report.sources)
    lines += ["length histogram (tokens per sample)", *_histogram_lines(report.length_histogram)]
    for i, sample in enumerate(report.samples, 1):
        lines += [f"--- sample {i} (trained text between {TRAIN_OPEN} and {TRAIN_CLOSE}) ---", sample]
    lines.append(f"cache             {report.cache_dir} ({'hit' if report.cache_hit else 'built'})")
    return "\n".join(lines)


def _finding_lines(report: DataReport) -> list[str]:
    columns = [f"{c['records']} records have {c['column']!r}, which the {report.dataset_format} format does not "
               f"read (first: {c['first']})" for c in report.unused_columns]
    placeholders = [f"{p['records']} records contain a placeholder such as {p['example']} (first: {p['first']})"
                    for p in report.placeholders]
    lines = []
    for heading, items in (("unused columns", columns), ("placeholders", placeholders)):
        lines += [f"{heading if i == 0 else '':<18}{item}" for i, item in enumerate(items or ["none"])]
    return lines


def _histogram_lines(bins: list[dict]) -> list[str]:
    peak = max((b["count"] for b in bins), default=0) or 1
    return [f"  {b['from']:>6}-{b['to']:<6} {b['count']:>8}  {'#' * round(40 * b['count'] / peak)}" for b in bins]


def _source_lines(sources: list[SourceReport]) -> list[str]:
    """The mixture's sources, one line each: what it holds and what one pass over the mixture takes."""
    if not sources:
        return []
    per_pass = sum(s.train_samples for s in sources)
    lines = [f"sources           {len(sources)}, one pass over the mixture takes {per_pass} training samples"]
    for s in sources:
        asked = f"weight {s.weight:g}" if s.weight is not None else \
            f"samples {s.samples}" if s.samples is not None else "all samples"
        lines.append(f"  {s.name:<15} {s.path} ({s.dataset_format}, {asked}): {s.records_read} records, "
                     f"{s.samples_kept} kept, {s.tokens} tokens; train {s.train_samples} samples "
                     f"({_pct(s.share)} of the mixture, x{s.repeats:.2f}), {s.train_tokens} tokens; "
                     f"valid {s.valid_samples}")
    return lines
