"""Split by sample, deterministic from data.seed: identical across runs and machines (golden values)."""

import numpy as np
import pytest

from primus_bridge.data import DataError, prepare_data
from primus_bridge.data.split import mix64, split_counts, split_documents

from pipeline_helpers import alpaca_record, write_jsonl


def test_mix64_golden_values():
    """splitmix64 in plain uint64 arithmetic (its published first output for state 0), on every machine."""
    assert mix64(np.array([0], dtype=np.uint64), 0).tolist() == [0xE220A8397B1DCDAF]


def test_split_golden_assignment():
    train, valid, test = split_documents(np.arange(20), (0.8, 0.1, 0.1), seed=1234)
    assert (len(train), len(valid), len(test)) == (16, 2, 2)
    assert sorted(train.tolist() + valid.tolist() + test.tolist()) == list(range(20))
    again = split_documents(np.arange(20), (0.8, 0.1, 0.1), seed=1234)
    assert [s.tolist() for s in again] == [train.tolist(), valid.tolist(), test.tolist()]
    other = split_documents(np.arange(20), (0.8, 0.1, 0.1), seed=1)
    assert [s.tolist() for s in other] != [train.tolist(), valid.tolist(), test.tolist()]


def test_split_golden_values_for_seed_1234():
    _, valid, test = split_documents(np.arange(20), (0.8, 0.1, 0.1), seed=1234)
    assert (valid.tolist(), test.tolist()) == ([5, 11], [3, 12])


def test_counts_give_every_nonzero_share_a_sample():
    assert split_counts(100, (0.95, 0.05, 0.0)) == (95, 5, 0)
    assert split_counts(3, (0.98, 0.01, 0.01)) == (1, 1, 1)
    with pytest.raises(DataError, match="too few usable samples"):
        split_counts(1, (0.5, 0.5, 0.0))


def test_a_skipped_record_does_not_move_other_samples(tmp_path, make_cfg, tokenizer):
    good = [alpaca_record(f"q{i}", f"a{i}") for i in range(40)]
    clean = write_jsonl(tmp_path / "clean.jsonl", good)
    with_bad = tmp_path / "bad.jsonl"
    lines = clean.read_text().splitlines()
    lines[7] = "{broken"
    with_bad.write_text("\n".join(lines) + "\n")

    def valid_ordinals(path, **extra):
        data = prepare_data(make_cfg(path, split="80,20,0", **extra), tokenizer)
        store = data.valid.store
        return sorted(int(store.ordinals[d]) for d in data.valid.row_docs)

    expected = [o for o in valid_ordinals(clean) if o != 7]
    got = valid_ordinals(with_bad, skip_bad_records=True)
    assert set(expected) <= set(got) | {7} and len(got) == 8
