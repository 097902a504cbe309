"""The pipeline's fast paths give what the plain forms give: token_range's direct edge lookup equals the scan over
every character (also where some characters belong to no token), chunk-wise store building equals the document
layout, gc_paused restores the collector, and the generated real-length records are deterministic and as long
as promised."""

import gc
import statistics

import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from primus_bridge.data.documents import gc_paused
from primus_bridge.data.encode import EncodedSample
from primus_bridge.data.formats import sharegpt
from primus_bridge.data.masking import token_range
from primus_bridge.data.records import RawRecord
from primus_bridge.data.store import StoreBuilder
from primus_bridge.data.synthetic import synthetic_chats
from primus_bridge.data.templates import get_template


def scanned_range(encoding, start: int, end: int):
    """token_range as a scan: the tokens of the first and the last character in [start, end) that a token covers."""
    covered = [t for t in (encoding.char_to_token(p) for p in range(start, end)) if t is not None]
    return (covered[0], covered[-1] + 1) if covered else None


def test_token_range_equals_the_scan_where_whitespace_has_no_token():
    words = {"hello": 0, "world": 1, "[UNK]": 2, ",": 3}
    tokenizer = Tokenizer(models.WordLevel(words, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    text = "  hello   world ,  hello\n\n world  "
    encoding = tokenizer.encode(text)
    assert any(encoding.char_to_token(p) is None for p in range(len(text))), "the case needs uncovered characters"
    for start in range(len(text) + 1):
        for end in range(len(text) + 2):
            assert token_range(encoding, start, end) == scanned_range(encoding, start, end), (start, end)


def sample(ids: list[int], spans: list[tuple[int, int]], ordinal: int) -> EncodedSample:
    return EncodedSample(ids, spans, None, ordinal, f"f:{ordinal}")


def test_store_built_in_chunks_lays_out_every_document():
    builder = StoreBuilder()
    builder.add_all([sample([5, 6, 7], [(0, 2)], 0), sample([8], [(0, 1), (0, 1)], 2)])
    builder.add_all([])
    builder.add(sample([9, 10], [(1, 2)], 3))
    store = builder.build()
    assert store.tokens.dtype == np.int32 and store.tokens.tolist() == [5, 6, 7, 8, 9, 10]
    assert store.doc_offsets.tolist() == [0, 3, 4, 6] and store.ordinals.tolist() == [0, 2, 3]
    assert store.spans.dtype == np.int32 and store.spans.tolist() == [[0, 2], [0, 1], [0, 1], [1, 2]]
    assert store.span_offsets.tolist() == [0, 1, 3, 4]
    ids, spans = store.document(1)
    assert ids.tolist() == [8] and spans.tolist() == [[0, 1], [0, 1]]


def test_empty_store_has_the_layout_dtypes():
    store = StoreBuilder().build()
    assert len(store) == 0 and store.tokens.dtype == np.int32 and store.spans.shape == (0, 2)


@pytest.mark.parametrize("enabled", [True, False])
def test_gc_paused_restores_the_collector_even_on_error(enabled):
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        with pytest.raises(RuntimeError), gc_paused():
            assert not gc.isenabled()
            raise RuntimeError("stop")
        assert gc.isenabled() == enabled
    finally:
        (gc.enable if was else gc.disable)()


def test_real_length_chats_are_deterministic_and_real_sft_length(tokenizer):
    records = list(synthetic_chats(200, seed=5))
    assert records == list(synthetic_chats(200, seed=5)) and records != list(synthetic_chats(200, seed=6))
    template = get_template("chatml", tokenizer)
    texts = [template.render(sharegpt(RawRecord(r, f"chats:{i}", i))).text for i, r in enumerate(records)]
    lengths = [len(e) for e in tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)]
    assert 500 <= statistics.median(lengths) <= 1300, statistics.median(lengths)
    assert min(lengths) >= 100 and 2000 <= max(lengths) <= 5000, (min(lengths), max(lengths))
