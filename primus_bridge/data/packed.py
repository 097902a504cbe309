"""Training rows: one or more whole documents per row of seq_length tokens, built on access from the store."""

from dataclasses import dataclass

import numpy as np

from .store import DocumentStore

IGNORE_INDEX = -100


@dataclass(frozen=True)
class PackedRow:
    """One row; every array has seq_length entries except seq_lens.

    labels are already shifted: labels[i] is the target for position i (input_ids[i + 1] of the same
    document) or -100 where not trained; loss_mask is 1.0 exactly where labels != -100. position_ids restart
    at 0 for each document. seq_lens lists the document lengths in order; padding at the end is its own
    final segment (labels -100).
    """

    input_ids: np.ndarray
    labels: np.ndarray
    loss_mask: np.ndarray
    position_ids: np.ndarray
    seq_lens: np.ndarray


def pad_token_id(tokenizer) -> int:
    """Padding is masked (label -100) and is its own segment, so its id only has to be a valid token."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


class PackedSplit:
    """The rows of one split (train, valid or test).

    `source_names` names the data sources; with more than one, `source_doc_offsets` says which store
    documents each holds (a mixture packs each source's rows on their own, so every row has one source).
    """

    def __init__(self, store: DocumentStore, row_offsets: np.ndarray, row_docs: np.ndarray,
                 seq_length: int, pad_id: int, source_names: tuple[str, ...] = ("data",),
                 source_doc_offsets: np.ndarray | None = None):
        self.store, self.row_offsets, self.row_docs = store, row_offsets, row_docs
        self.seq_length, self.pad_id = seq_length, pad_id
        self.source_names, self.source_doc_offsets = tuple(source_names), source_doc_offsets

    def __len__(self) -> int:
        return len(self.row_offsets) - 1

    def row_sources(self, indices: np.ndarray | list[int] | None = None) -> np.ndarray:
        """The source index (into source_names) of each row in `indices` (default: every row)."""
        rows = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64)
        if self.source_doc_offsets is None or not len(rows):
            return np.zeros(len(rows), dtype=np.int64)
        first_docs = self.row_docs[self.row_offsets[rows]]
        return np.searchsorted(self.source_doc_offsets, first_docs, side="right") - 1

    def documents(self, index: int) -> np.ndarray:
        """Store indices of the documents in row `index`."""
        return self.row_docs[self.row_offsets[index]:self.row_offsets[index + 1]]

    def num_documents(self) -> int:
        return len(self.row_docs)

    def num_tokens(self) -> int:
        return int(self.store.lengths()[self.row_docs].sum()) if len(self.row_docs) else 0

    def __getitem__(self, index: int) -> PackedRow:
        if not -len(self) <= index < len(self):
            raise IndexError(f"row {index} out of range for a split of {len(self)} rows")
        index %= len(self)
        size = self.seq_length
        input_ids = np.full(size, self.pad_id, dtype=np.int64)
        labels = np.full(size, IGNORE_INDEX, dtype=np.int64)
        position_ids = np.empty(size, dtype=np.int64)
        seq_lens, cursor = [], 0
        for doc in self.documents(index).tolist():
            ids, spans = self.store.document(doc)
            n = len(ids)
            input_ids[cursor:cursor + n] = ids
            position_ids[cursor:cursor + n] = np.arange(n)
            for start, end in spans.tolist():
                labels[cursor + start:cursor + end] = ids[start + 1:end + 1]
            seq_lens.append(n)
            cursor += n
        if cursor < size:
            position_ids[cursor:] = np.arange(size - cursor)
            seq_lens.append(size - cursor)
        loss_mask = (labels != IGNORE_INDEX).astype(np.float32)
        return PackedRow(input_ids, labels, loss_mask, position_ids, np.array(seq_lens, dtype=np.int32))

    def __iter__(self):
        for index in range(len(self)):
            yield self[index]
