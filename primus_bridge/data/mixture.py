"""Data mixtures: each source split on its own, its training samples drawn to the mixture's weights or counts.

One pass over the mixture (one epoch of its train rows) takes from source s a target number of training samples:
- weights: the shortest pass in which no source loses a sample, N = max(n_s / w_s) over the sources' train
  samples n_s and normalized weights w_s; source s gives max(n_s, round(w_s * N)) samples;
- samples: exactly that many per pass;
- neither: every sample once (as if the files were in one folder).
A target above n_s repeats the source's samples whole, then adds a seeded subset for the rest (upsampling); a
target below n_s is a seeded subset. The draw depends only on data.seed and the records, so a rebuilt cache
holds the same rows and a resumed run continues at the exact next sample.

Each source's train rows are packed on their own (a row never mixes sources), once for its whole copies and
once for its remainder, so a repeated source costs no more packing than one copy. Validation and test rows
hold each source's own split share and are interleaved in proportion, so the first rows an evaluation reads
cover the sources in the same proportion as the whole split.
"""

from dataclasses import dataclass

import numpy as np

from ..config.sections.data import DataSource
from .errors import DataError
from .packing import layout_rows
from .split import mix64

MAX_PASS_FACTOR = 100
"""A pass over the mixture may hold at most this many times the sources' own training samples."""
_SUBSET_SALT = 0x5EED_0F_5AB5E7


@dataclass(frozen=True)
class SourceDraw:
    """What one pass over the mixture takes from one source's train split."""

    docs: np.ndarray
    """Store indices of the source's train documents."""
    copies: int
    """Whole repeats of docs."""
    remainder: np.ndarray
    """A seeded subset of docs, taken once more."""

    @property
    def samples(self) -> int:
        return self.copies * len(self.docs) + len(self.remainder)


def pass_targets(sources: list[DataSource], available: list[int]) -> list[int]:
    """Training samples per pass from each source (see the module docstring)."""
    if sources[0].samples is not None:
        return [source.samples for source in sources]
    if sources[0].weight is None:
        return list(available)
    total = sum(source.weight for source in sources)
    shares = [source.weight / total for source in sources]
    length = max(n / share for n, share in zip(available, shares))
    return [max(n, round(share * length)) for n, share in zip(available, shares)]


def check_pass_size(sources: list[DataSource], available: list[int], targets: list[int]) -> None:
    if sum(targets) <= MAX_PASS_FACTOR * sum(available):
        return
    most = max(range(len(sources)), key=lambda s: targets[s] / max(available[s], 1))
    raise DataError("data.data_path", f"one pass over the mixture would hold {sum(targets)} training samples, "
                                      f"over {MAX_PASS_FACTOR}x the {sum(available)} the sources have (source "
                                      f"{sources[most].name!r} repeated {targets[most] / available[most]:.0f}x); "
                                      "give that source a smaller weight or sample count", "mixture too large")


def draw(docs: np.ndarray, ordinals: np.ndarray, target: int, seed: int, source_index: int) -> SourceDraw:
    """`target` samples out of `docs` (ordinals: their record positions): whole copies plus a seeded subset."""
    copies, rest = divmod(target, len(docs))
    keys = mix64(ordinals[docs], seed + _SUBSET_SALT + source_index)
    remainder = np.sort(docs[np.argsort(keys, kind="stable")[:rest]])
    return SourceDraw(docs, copies, remainder)


def concat_rows(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Row arrays (row_offsets, row_docs) laid one after another."""
    if not parts:
        return np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64)
    sizes = np.concatenate([np.diff(offsets) for offsets, _ in parts])
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return offsets, np.concatenate([docs for _, docs in parts]).astype(np.int64)


def train_rows(draws: list[SourceDraw], lengths: np.ndarray, seq_length: int, packing: bool
               ) -> tuple[np.ndarray, np.ndarray]:
    parts = []
    for drawn in draws:
        if drawn.copies:
            parts += [layout_rows(drawn.docs, lengths[drawn.docs], seq_length, packing)] * drawn.copies
        if len(drawn.remainder):
            parts.append(layout_rows(drawn.remainder, lengths[drawn.remainder], seq_length, packing))
    return concat_rows(parts)


def interleaved_rows(per_source: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The sources' rows merged in proportion: row j of a source with R rows sits at (j + 0.5) / R."""
    offsets, docs = concat_rows(per_source)
    counts = [len(o) - 1 for o, _ in per_source]
    keys = np.concatenate([(np.arange(r) + 0.5) / r for r in counts if r]) if any(counts) else np.zeros(0)
    order = np.argsort(keys, kind="stable")
    sizes = np.diff(offsets)[order]
    picked = [docs[offsets[row]:offsets[row + 1]] for row in order.tolist()]
    new_offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return new_offsets, (np.concatenate(picked) if picked else docs[:0]).astype(np.int64)


def doc_sources(source_doc_offsets: np.ndarray, docs: np.ndarray) -> np.ndarray:
    """The source index of each store document in `docs` (source s holds documents offsets[s]..offsets[s+1]-1)."""
    return np.searchsorted(source_doc_offsets, docs, side="right") - 1
