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
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

from primus_bridge.data.documents import gc_paused
from primus_bridge.data.encode import (
    NEWLINE_RUN_PATTERNS,
    EncodedSample,
    Joined,
    OpeningCache,
    backend_of,
    opening_split_rule,
)
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
                 "\u3000ideographic space", "a\n\n### Response:\n b</s>\n", "\u0301combining", "\u180emongolian",
                 "\u200bzero width", "\ufeffbom", "123456 digits", ":\n colon"]


@pytest.mark.parametrize("template_name", ["alpaca", "chatml", "qwen2"])
@pytest.mark.parametrize("system", [None, "", "Be brief.", "Ends in space ", "Ends in newline\n", "Tab\t"])
def test_opening_plus_rest_equals_the_whole_text(tokenizer, template_name, system):
    """Wherever the cache splits a sample, its ids and every character's token are those of the whole text; it
    splits the plain samples (else the fast path is never taken) and never before whitespace."""
    assert_openings_split_exactly(get_template(template_name, tokenizer), backend_of(tokenizer), system)


def assert_openings_split_exactly(template, whole: Tokenizer, system: str | None) -> None:
    """For every OPENING_RESTS first message: where the cache splits the rendered sample, the joined encoding is
    the whole text's; the plain message is split (else the fast path is never taken)."""
    cache, split_plain = OpeningCache(whole), False
    assert cache.enabled
    for rest in OPENING_RESTS:
        conversation = Conversation(system, (Turn(rest, f"{rest} reply", rest[:3]),), "test", 0)
        rendered = template.render(conversation)
        assert rendered.opening > 0
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


SPECIAL_TOKENS = ["<|im_start|>", "<|im_end|>", "</s>", "<|begin_of_text|>", "<|start_header_id|>",
                  "<|end_header_id|>", "<|eot_id|>"]
PATTERN_CORPUS = ["Intro:\n  two spaces\n\n\nthree\n \n\t\n  \n x 's 99 9\r\n", "a \n b\n\nc\t\nd\r\ne's\n'd end\n",
                  "user\n\nHello:\n\n 12345 \u00e9\u0301 \u82f9\u679c\n\n\n", "### Response:\n\n- item\n  - sub\n"]


def pattern_bpe(pattern: str) -> Tokenizer:
    """A byte-level BPE with Llama 3's or Qwen 2's split pattern (Split, then ByteLevel without its regex) and, for
    Qwen 2, its NFC normalizer: built as their tokenizer.json files declare them, trained here to merge runs of
    newlines and spaces as their vocabularies do."""
    bpe = Tokenizer(models.BPE())
    if pattern == "qwen2":
        bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(NEWLINE_RUN_PATTERNS[pattern]), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(PATTERN_CORPUS * 50, trainer)
    assert "ĊĊ" in bpe.get_vocab() and "ĠĊ" in bpe.get_vocab()
    return bpe


def bpe_named(name: str, tokenizer) -> Tokenizer:
    if name == "project":
        return backend_of(tokenizer)
    return whitespace_merging_bpe() if name == "whitespace-merging" else pattern_bpe(name)


SPLIT_TEXTS = ["Intro:\nWhat is 2 + 2?\n\n### Response:\n4</s>", "a \n b\n\nc\t\nd\r\ne's\n'd",
               "Intro:\n  two spaces\n\n\nthree\n \n\t\n  \n x 's 99 9\r\n",
               "<|im_start|>user\n<|im_end|>\n 苹果\n水 \n\u00a0x\n\x85y\n\x1cz\n9\n 9", "end\n", "\n\nx\n",
               "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>:\n\n12345\n\u0301e\n\u180ez\n\n\u200by",
               "Hello:\n\n- a\n  - b\n\n\n'll\n'S\n\ufeff\n\u3000x"]


@pytest.mark.parametrize("bpe", ["project", "whitespace-merging", "llama3", "qwen2"])
@pytest.mark.parametrize("text", SPLIT_TEXTS)
def test_opening_cache_splits_exactly_at_any_marked_position(tokenizer, bpe, text):
    """Whatever position a template marks as its opening's end, a split there gives the whole text's encoding."""
    whole = bpe_named(bpe, tokenizer)
    assert opening_split_rule(whole) is not None
    for end in range(len(text) + 1):
        cache = OpeningCache(whole)
        opening, rest = cache.split(Rendered(text, [], [], [], end))
        if opening is not None:
            assert_joined_is_whole(whole, opening, rest, text)


def test_newline_run_patterns_split_after_several_newlines_where_gpt2_cannot(tokenizer):
    """The rule follows the pattern: Llama 3's and Qwen 2's split after a run of newlines (Llama 3's headers end in
    two), GPT-2's only after a lone one (before a non-space, two newlines are two pieces there, one at the end)."""
    text = "<|start_header_id|>user<|end_header_id|>\n\nHi"
    end = text.index("Hi")
    assert opening_split_rule(pattern_bpe("llama3"))(text, end)
    assert not opening_split_rule(backend_of(tokenizer))(text, end)
    assert opening_split_rule(backend_of(tokenizer))("user\nHi", 5)


@pytest.mark.parametrize("template_name,pattern", [("llama3", "llama3"), ("llama3.1", "llama3"),
                                                   ("qwen2.5", "qwen2"), ("qwen3", "qwen2")])
@pytest.mark.parametrize("system", [None, "", "Be brief.", "Ends in newline\n"])
def test_llama3_and_qwen_templates_split_their_openings_exactly(template_name, pattern, system):
    """Rendered by the Llama 3 / 3.1 and Qwen 2.5 / 3 templates and tokenized with a tokenizer of their split
    pattern: the cache splits the plain samples after the first user header, and wherever it splits, the ids and
    every character's token are the whole text's."""
    from transformers import PreTrainedTokenizerFast

    bpe = pattern_bpe(pattern)
    assert_openings_split_exactly(get_template(template_name, PreTrainedTokenizerFast(tokenizer_object=bpe)), bpe,
                                  system)


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
    assert opening_split_rule(Tokenizer.from_str(json.dumps(spec))) is None
