"""Packing: every document placed once within capacity, boundaries kept (positions restart, labels never
cross documents, cu_seqlens), efficiency reported; packing off gives one document per row."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from primus_bridge.data import IGNORE_INDEX, iterate_batches, prepare_data
from primus_bridge.data.packing import pack_best_fit

from pipeline_helpers import alpaca_record, write_jsonl


def first_fit_decreasing_rows(lengths, capacity) -> int:
    rooms = []
    for length in sorted(lengths, reverse=True):
        for i, room in enumerate(rooms):
            if room >= length:
                rooms[i] -= length
                break
        else:
            rooms.append(capacity - length)
    return len(rooms)


@settings(max_examples=100, deadline=2000)
@given(st.lists(st.integers(1, 64), max_size=120), st.integers(64, 100))
def test_best_fit_places_each_document_once_within_capacity(lengths, capacity):
    rows = pack_best_fit(np.array(lengths, dtype=np.int64), capacity)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= capacity for row in rows)
    assert len(rows) <= first_fit_decreasing_rows(lengths, capacity)


def records(n):
    return [alpaca_record(f"Question {i}: " + "x " * (i % 13), f"Answer {i}." + " y" * (i % 7)) for i in range(n)]


@pytest.fixture
def packed(tmp_path, make_cfg, tokenizer):
    path = write_jsonl(tmp_path / "a.jsonl", records(60))
    return prepare_data(make_cfg(path, split="100,0,0", seq_length=256), tokenizer)


def test_rows_keep_document_boundaries(packed):
    store = packed.train.store
    seen = []
    for index in range(len(packed.train)):
        row, docs = packed.train[index], packed.train.documents(index).tolist()
        assert row.seq_lens.sum() == 256 and len(row.input_ids) == 256
        cursor = 0
        for doc, length in zip(docs, row.seq_lens.tolist()):
            ids, _ = store.document(doc)
            assert np.array_equal(row.input_ids[cursor:cursor + length], ids)
            assert np.array_equal(row.position_ids[cursor:cursor + length], np.arange(length))
            assert row.labels[cursor + length - 1] == IGNORE_INDEX  # nothing predicted across the boundary
            cursor += length
        assert np.all(row.labels[cursor:] == IGNORE_INDEX)  # padding segment
        assert np.array_equal(row.position_ids[cursor:], np.arange(256 - cursor))
        seen += docs
    assert sorted(seen) == list(range(60))


def test_packing_efficiency_is_reported(packed):
    report = packed.report
    real = report.splits["train"].tokens
    assert report.splits["train"].packing_efficiency == pytest.approx(real / (len(packed.train) * 256))
    assert report.packing_efficiency > 0.8 and len(packed.train) < 60


def test_cu_seqlens_cover_the_flattened_batch(packed):
    batch = next(iterate_batches(packed.train, micro_batch_size=2))
    rows = [packed.train[i] for i in batch["indices"].tolist()]
    lengths = np.concatenate([r.seq_lens for r in rows])
    assert batch["cu_seqlens"].tolist() == [0, *np.cumsum(lengths).tolist()]
    assert batch["cu_seqlens"][-1] == 2 * 256 and batch["max_seqlen"] == lengths.max()


def test_packing_off_gives_one_document_per_row(tmp_path, make_cfg, tokenizer):
    path = write_jsonl(tmp_path / "a.jsonl", records(10))
    data = prepare_data(make_cfg(path, split="100,0,0", packing=False), tokenizer)
    assert len(data.train) == 10
    assert all(len(row.seq_lens) == 2 for row in data.train)  # the document, then padding
