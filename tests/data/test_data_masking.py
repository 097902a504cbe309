"""Loss masks: only replies and the token that closes them by default; train_on_prompt; mask_history;
labels shifted within each document; samples with nothing to train are dropped and counted."""

import numpy as np
import pytest

from primus_bridge.data import IGNORE_INDEX, prepare_data

from pipeline_helpers import alpaca_record, chat, write_jsonl

CLOSERS = {"chatml": "<|im_end|>", "qwen2": "<|im_end|>", "llama3": "<|eot_id|>", "mistral": "</s>",
           "tokenizer": "<|im_end|>", "alpaca": "</s>"}
LEADS = {"mistral": " "}  # Mistral writes " " + reply after [/INST]: the space starts the reply's first token


def trained_texts(data, tokenizer) -> list[str]:
    """Decoded trained spans of every document in the train split, in document order."""
    texts = []
    for d in range(len(data.train.store)):
        ids, spans = data.train.store.document(d)
        texts += [tokenizer.decode(np.asarray(ids[s + 1:e + 1]).tolist()) for s, e in np.asarray(spans).tolist()]
    return texts


def one_row(data):
    assert len(data.train) == 1
    return data.train[0]


@pytest.mark.parametrize("template", sorted(CLOSERS))
def test_default_trains_each_reply_and_its_closing_token(tmp_path, make_cfg, tokenizer, template):
    path = write_jsonl(tmp_path / "c.jsonl", [chat("Hi!", "Hello there.", "2 + 3?", "5.", system="Be brief.")])
    data = prepare_data(make_cfg(path, prompt_template=template, split="100,0,0"), tokenizer)
    closer, lead = CLOSERS[template], LEADS.get(template, "")
    assert trained_texts(data, tokenizer) == [f"{lead}Hello there.{closer}", f"{lead}5.{closer}"]


def test_labels_are_shifted_and_loss_mask_matches(tmp_path, make_cfg, tokenizer):
    path = write_jsonl(tmp_path / "c.jsonl", [chat("a", "b c d")])
    row = one_row(prepare_data(make_cfg(path, prompt_template="chatml", split="100,0,0", seq_length=64), tokenizer))
    trained = np.flatnonzero(row.labels != IGNORE_INDEX)
    assert np.array_equal(row.labels[trained], row.input_ids[trained + 1])
    assert np.array_equal(row.loss_mask, (row.labels != IGNORE_INDEX).astype(np.float32))
    assert tokenizer.decode(row.labels[trained].tolist()) == "b c d<|im_end|>"
    assert row.labels[trained[-1]] == tokenizer.convert_tokens_to_ids("<|im_end|>")


def test_eos_is_trained_for_alpaca(tmp_path, make_cfg, tokenizer):
    path = write_jsonl(tmp_path / "a.jsonl", [alpaca_record("Name a color.", "Red.")])
    row = one_row(prepare_data(make_cfg(path, prompt_template="alpaca", split="100,0,0", seq_length=96), tokenizer))
    trained = row.labels[row.labels != IGNORE_INDEX]
    assert trained[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(trained.tolist()) == "Red.</s>"


def test_mask_history_trains_only_the_last_reply(tmp_path, make_cfg, tokenizer):
    path = write_jsonl(tmp_path / "c.jsonl", [chat("q1", "first", "q2", "second")])
    data = prepare_data(make_cfg(path, prompt_template="chatml", split="100,0,0", mask_history=True), tokenizer)
    assert trained_texts(data, tokenizer) == ["second<|im_end|>"]


def test_train_on_prompt_trains_everything_up_to_the_last_reply_end(tmp_path, make_cfg, tokenizer):
    path = write_jsonl(tmp_path / "c.jsonl", [chat("q1", "first", "q2", "second", system="S")])
    cfg = make_cfg(path, prompt_template="chatml", split="100,0,0", train_on_prompt=True)
    (text,) = trained_texts(prepare_data(cfg, tokenizer), tokenizer)
    full = "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nq1<|im_end|>\n<|im_start|>assistant\nfirst<|im_end|>\n" \
           "<|im_start|>user\nq2<|im_end|>\n<|im_start|>assistant\nsecond<|im_end|>"
    assert text == full.removeprefix("<|im_start|>")  # the first token is never a target
    cfg = make_cfg(path, prompt_template="chatml", split="100,0,0", train_on_prompt=True, mask_history=True)
    assert trained_texts(prepare_data(cfg, tokenizer), tokenizer) == [
        "<|im_start|>user\nq2<|im_end|>\n<|im_start|>assistant\nsecond<|im_end|>"]


def test_trainable_share_is_between_zero_and_all(tmp_path, make_cfg, tokenizer, repo):
    cfg = make_cfg(repo / "examples/data/sharegpt_sample.jsonl", prompt_template="chatml", seq_length=512)
    report = prepare_data(cfg, tokenizer).report
    assert 0 < report.trainable_pct < 100
    assert report.trainable_tokens == sum(int(r.loss_mask.sum()) for s in ("train", "valid", "test")
                                          for r in getattr(prepare_data(cfg, tokenizer), s))


def test_sample_with_nothing_trainable_is_dropped_and_counted(tmp_path, make_cfg, tokenizer):
    long_system = " ".join(["word"] * 200)
    path = write_jsonl(tmp_path / "c.jsonl", [chat("q", "a", system=long_system), chat("q", "fine")])
    data = prepare_data(make_cfg(path, prompt_template="chatml", split="100,0,0", seq_length=64), tokenizer)
    assert data.report.dropped == {"no trainable tokens": 1}
    assert data.report.samples_kept == 1
    assert all(row.loss_mask.sum() > 0 for row in data.train)
