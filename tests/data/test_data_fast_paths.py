"""The pipeline's fast paths give what the plain forms give: token_range's direct edge lookup equals the scan over
every character (also where some characters belong to no token), chunk-wise store building equals the document
layout, gc_paused restores the collector, a sample tokenized as its cached template opening plus the rest has the
whole text's ids and char_to_token, and the generated real-length records are deterministic and as long as
promised."""

import gc
import json
import statistics

import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

from primus_bridge.data.documents import gc_paused
from primus_bridge.data.encode import EncodedSample, Joined, OpeningCache, backend_of, splits_at_lone_newlines
from primus_bridge.data.formats import sharegpt
from primus_bridge.data.masking import token_range
from primus_bridge.data.records import Conversation, RawRecord, Turn
from primus_bridge.data.store import StoreBuilder
from primus_bridge.data.synthetic import synthetic_chats
from primus_bridge.data.templates import Rendered, get_template


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


OPENING_RESTS = ["What is 2 + 2?", "x", "7 apples", "'s a test", "\"quoted\"", "(aside)", "### Input", "<|im_end|>",
                 "</s> after", "<s>", "苹果 and 水", "🙂 emoji", "é accent", "-dash", "\u00a0nbsp", "\x85next",
                 "\x1cfile", " leading space", "  two spaces", "\nnewline", "\n\nblank line", "\ttab", "\r\nCRLF",
                 "\u3000ideographic space", "a\n\n### Response:\n b</s>\n"]


@pytest.mark.parametrize("template_name", ["alpaca", "chatml", "qwen2"])
@pytest.mark.parametrize("system", [None, "", "Be brief.", "Ends in space ", "Ends in newline\n", "Tab\t"])
def test_opening_plus_rest_equals_the_whole_text(tokenizer, template_name, system):
    """Wherever the cache splits a sample, its ids and every character's token are those of the whole text; it
    splits the plain samples (else the fast path is never taken) and never before whitespace."""
    template, whole = get_template(template_name, tokenizer), backend_of(tokenizer)
    cache = OpeningCache(backend_of(tokenizer))
    assert cache.enabled
    split_plain = False
    for rest in OPENING_RESTS:
        conversation = Conversation(system, (Turn(rest, f"{rest} reply", rest[:3]),), "test", 0)
        rendered = template.render(conversation)
        opening, text = cache.split(rendered)
        if opening is None:
            continue
        split_plain |= rest == "What is 2 + 2?"
        assert_joined_is_whole(whole, opening, text, rendered.text)
    assert split_plain


def assert_joined_is_whole(whole, opening, rest: str, text: str) -> None:
    expected, joined = whole.encode(text, add_special_tokens=False), Joined(opening, whole.encode(
        rest, add_special_tokens=False))
    assert joined.ids == expected.ids, (text, opening.chars)
    assert len(joined) == len(expected)
    for pos in range(len(text) + 1):
        assert joined.char_to_token(pos) == expected.char_to_token(pos), (text, opening.chars, pos)


def whitespace_merging_bpe() -> Tokenizer:
    """A byte-level BPE (GPT-2's split pattern) trained to merge runs of newlines and spaces, as large vocabularies
    do (the project tokenizer has no such merges, so a wrong split would still give its ids)."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.post_processor = processors.ByteLevel(trim_offsets=True)
    corpus = ["Intro:\n  two spaces\n\n\nthree\n \n\t\n  \n x 's 99 9\r\n", "a \n b\n\nc\t\nd\r\ne's\n'd end\n"]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|im_start|>", "<|im_end|>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(corpus * 50, trainer)
    assert "ĊĠ" in bpe.get_vocab() and "ĊĊ" in bpe.get_vocab()
    return bpe


@pytest.mark.parametrize("bpe", ["project", "whitespace-merging"])
@pytest.mark.parametrize("text", ["Intro:\nWhat is 2 + 2?\n\n### Response:\n4</s>", "a \n b\n\nc\t\nd\r\ne's\n'd",
                                  "Intro:\n  two spaces\n\n\nthree\n \n\t\n  \n x 's 99 9\r\n",
                                  "<|im_start|>user\n<|im_end|>\n 苹果\n水 \n\u00a0x\n\x85y\n\x1cz\n9\n 9",
                                  "end\n", "\n\nx\n"])
def test_opening_cache_splits_exactly_at_any_marked_position(tokenizer, bpe, text):
    """Whatever position a template marks as its opening's end, a split there gives the whole text's encoding."""
    whole = backend_of(tokenizer) if bpe == "project" else whitespace_merging_bpe()
    assert splits_at_lone_newlines(whole)
    for end in range(len(text) + 1):
        cache = OpeningCache(whole)
        opening, rest = cache.split(Rendered(text, [], [], [], end))
        if opening is not None:
            assert_joined_is_whole(whole, opening, rest, text)


def test_opening_cache_is_bounded_and_keeps_whole_texts_past_it(tokenizer):
    template, cache = get_template("alpaca", tokenizer), OpeningCache(backend_of(tokenizer))
    cache.LIMIT = 2
    rendered = [template.render(Conversation(f"System {i}.", (Turn("Hi", "Hello"),), "test", 0)) for i in range(3)]
    assert [cache.split(r)[0] is not None for r in rendered] == [True, True, False]
    assert cache.split(rendered[2])[1] == rendered[2].text


@pytest.mark.parametrize("change", ["normalizer", "prefix_space", "metaspace", "lstrip", "newline_token"])
def test_opening_cache_is_off_for_tokenizers_it_cannot_split_exactly(tokenizer, change):
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    if change == "normalizer":
        spec["normalizer"] = {"type": "NFKC"}
    elif change == "prefix_space":
        spec["pre_tokenizer"]["add_prefix_space"] = True
    elif change == "metaspace":
        spec["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first",
                                 "split": True}
    elif change == "lstrip":
        spec["added_tokens"][-1]["lstrip"] = True
    else:
        spec["added_tokens"][-1]["content"] = "<|newline|>\n"
    assert splits_at_lone_newlines(Tokenizer.from_str(json.dumps(spec))) is False
