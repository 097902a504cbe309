"""iterate_batches: stacked tensors, deterministic seeded order, resumable from a sample index."""

import pytest
import torch

from primus_bridge.data import iterate_batches, prepare_data

from pipeline_helpers import alpaca_record, write_jsonl


@pytest.fixture(scope="module")
def split(tmp_path_factory, tokenizer):
    from primus_bridge.config import PrimusConfig
    from pipeline_helpers import TOKENIZER_DIR

    tmp = tmp_path_factory.mktemp("batches")
    path = write_jsonl(tmp / "a.jsonl", [alpaca_record(f"q{i} " + "x " * (i % 50), f"a{i}") for i in range(80)])
    cfg = PrimusConfig.model_validate({"model": {"tokenizer": str(TOKENIZER_DIR)}, "data": {
        "data_path": str(path), "cache_dir": str(tmp / "cache"), "seq_length": 128, "split": "100,0,0"}})
    return prepare_data(cfg, tokenizer).train


def indices(batches) -> list[int]:
    return [i for batch in batches for i in batch["indices"].tolist()]


def test_batch_shapes_and_dtypes(split):
    batch = next(iterate_batches(split, micro_batch_size=3, seed=1))
    for key in ("input_ids", "labels", "position_ids"):
        assert batch[key].shape == (3, 128) and batch[key].dtype == torch.int64
    assert batch["loss_mask"].dtype == torch.float32
    assert torch.equal(batch["loss_mask"] > 0, batch["labels"] != -100)


def test_seeded_order_is_deterministic_and_a_permutation_per_epoch(split):
    n = len(split)
    first = indices(iterate_batches(split, 1, seed=5, epochs=2))
    assert first == indices(iterate_batches(split, 1, seed=5, epochs=2))
    assert sorted(first[:n]) == sorted(first[n:]) == list(range(n))
    assert first[:n] != first[n:]
    assert first != indices(iterate_batches(split, 1, seed=6, epochs=2))
    assert indices(iterate_batches(split, 1, epochs=1)) == list(range(n))


def test_resume_from_a_sample_index_continues_the_same_sequence(split):
    n = len(split)
    order = indices(iterate_batches(split, 1, seed=3, epochs=3))
    assert len(order) == 3 * n
    for start in (0, 4, 7, n - 2, n + 6, 2 * n + 1):
        resumed = indices(iterate_batches(split, 4, start_index=start, seed=3, epochs=3))
        assert resumed == order[start:start + 4 * ((3 * n - start) // 4)]


def test_endless_by_default_and_last_short_batch_on_request(split):
    endless = iterate_batches(split, 2, seed=0)
    assert len([next(endless) for _ in range(3 * len(split))]) == 3 * len(split)
    batches = list(iterate_batches(split, 3, epochs=1, drop_last=False))
    assert sum(len(b["indices"]) for b in batches) == len(split)
    with pytest.raises(ValueError, match="micro_batch_size"):
        next(iterate_batches(split, 0))
