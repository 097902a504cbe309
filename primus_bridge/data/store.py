"""Every kept document's token ids back to back, with its trained label spans and its record ordinal."""

from array import array
from dataclasses import dataclass

import numpy as np

from .encode import EncodedSample


@dataclass(frozen=True)
class DocumentStore:
    tokens: np.ndarray
    """int32: the ids of every document, one after another."""
    doc_offsets: np.ndarray
    """int64 [documents + 1]: document d is tokens[doc_offsets[d]:doc_offsets[d + 1]]."""
    spans: np.ndarray
    """int32 [spans, 2]: trained label positions [start, end), relative to their document."""
    span_offsets: np.ndarray
    """int64 [documents + 1]: document d's spans are spans[span_offsets[d]:span_offsets[d + 1]]."""
    ordinals: np.ndarray
    """int64 [documents]: each document's record position in the input (the split key)."""

    ARRAYS = ("tokens", "doc_offsets", "spans", "span_offsets", "ordinals")

    def __len__(self) -> int:
        return len(self.doc_offsets) - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.doc_offsets)

    def document(self, d: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, spans) of document d."""
        ids = self.tokens[self.doc_offsets[d]:self.doc_offsets[d + 1]]
        return ids, self.spans[self.span_offsets[d]:self.span_offsets[d + 1]]

    def trained_counts(self) -> np.ndarray:
        """Trained label positions per document."""
        widths = (self.spans[:, 1] - self.spans[:, 0]).astype(np.int64)
        per_doc = np.zeros(len(self), dtype=np.int64)
        owners = np.repeat(np.arange(len(self)), np.diff(self.span_offsets))
        np.add.at(per_doc, owners, widths)
        return per_doc


class StoreBuilder:
    """Collects documents a chunk at a time: each chunk's ids become one int32 array (4 bytes a token), joined
    once in build() (no growing buffer copied over and over)."""

    def __init__(self):
        self.tokens: list[np.ndarray] = []
        self.lengths, self.span_counts, self.ordinals = array("q"), array("q"), array("q")
        self.spans: list[np.ndarray] = []

    def add(self, sample: EncodedSample) -> None:
        self.add_all([sample])

    def add_all(self, samples: list[EncodedSample]) -> None:
        ids, spans = [], []
        for sample in samples:
            ids += sample.ids
            spans += sample.spans
            self.lengths.append(len(sample.ids))
            self.span_counts.append(len(sample.spans))
            self.ordinals.append(sample.ordinal)
        self.tokens.append(np.fromiter(ids, dtype=np.int32, count=len(ids)))
        self.spans.append(np.array(spans, dtype=np.int32).reshape(-1, 2))

    def __len__(self) -> int:
        return len(self.lengths)

    def build(self) -> DocumentStore:
        def offsets(counts: array) -> np.ndarray:
            return np.concatenate([[0], np.cumsum(np.frombuffer(counts, dtype=np.int64))]).astype(np.int64)

        return DocumentStore(
            tokens=np.concatenate(self.tokens) if self.tokens else np.zeros(0, dtype=np.int32),
            doc_offsets=offsets(self.lengths),
            spans=np.concatenate(self.spans) if self.spans else np.zeros((0, 2), dtype=np.int32),
            span_offsets=offsets(self.span_counts),
            ordinals=np.frombuffer(self.ordinals, dtype=np.int64).copy(),
        )


def concat_stores(stores: list[DocumentStore]) -> DocumentStore:
    """The stores' documents one after another (ordinals stay each store's own record positions)."""
    def offsets(name: str) -> np.ndarray:
        arrays, base = [np.zeros(1, dtype=np.int64)], 0
        for store in stores:
            values = getattr(store, name)
            arrays.append(values[1:] + base)
            base += int(values[-1])
        return np.concatenate(arrays).astype(np.int64)

    return DocumentStore(
        tokens=np.concatenate([s.tokens for s in stores]),
        doc_offsets=offsets("doc_offsets"),
        spans=np.concatenate([s.spans for s in stores]).reshape(-1, 2),
        span_offsets=offsets("span_offsets"),
        ordinals=np.concatenate([s.ordinals for s in stores]),
    )
