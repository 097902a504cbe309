"""Truncation to seq_length: oldest turns first, then the prompt, and the start of a reply is always kept."""

import numpy as np

from primus_bridge.data import prepare_data

from pipeline_helpers import alpaca_record, chat, write_jsonl


def only_document(data):
    (ids, spans), store = data.train.store.document(0), data.train.store
    assert len(store) == 1
    return np.asarray(ids).tolist(), np.asarray(spans).tolist()


def text_of(tokenizer, ids) -> str:
    return tokenizer.decode(ids)


def test_oldest_turns_go_first(tmp_path, make_cfg, tokenizer):
    old = " ".join(["old"] * 60)
    path = write_jsonl(tmp_path / "c.jsonl", [chat(old, old, "newest question", "newest answer", system="S")])
    data = prepare_data(make_cfg(path, prompt_template="chatml", split="100,0,0", seq_length=48), tokenizer)
    ids, _ = only_document(data)
    assert len(ids) <= 48
    text = text_of(tokenizer, ids)
    assert "old" not in text and text.startswith("<|im_start|>system\nS<|im_end|>")
    assert text.endswith("newest answer<|im_end|>\n")
    assert data.report.truncated == {"oldest turns": 1}


def test_long_input_is_cut_before_the_reply(tmp_path, make_cfg, tokenizer):
    record = alpaca_record("Summarize.", "Short summary.", context=" ".join(f"w{i}" for i in range(300)))
    path = write_jsonl(tmp_path / "a.jsonl", [record])
    data = prepare_data(make_cfg(path, prompt_template="alpaca", split="100,0,0", seq_length=96), tokenizer)
    ids, spans = only_document(data)
    assert len(ids) <= 96
    text = text_of(tokenizer, ids)
    assert "### Instruction:\nSummarize.\n\n### Input:\nw0 w1" in text
    assert text.endswith("### Response:\nShort summary.</s>")
    assert data.report.truncated == {"prompt": 1}
    assert text_of(tokenizer, ids[spans[0][0] + 1:spans[0][1] + 1]) == "Short summary.</s>"


def test_reply_longer_than_a_row_keeps_its_start(tmp_path, make_cfg, tokenizer):
    reply = " ".join(f"r{i}" for i in range(200))
    path = write_jsonl(tmp_path / "a.jsonl", [alpaca_record("Count. " + "x " * 50, reply)])
    data = prepare_data(make_cfg(path, split="100,0,0", seq_length=80), tokenizer)
    ids, spans = only_document(data)
    assert len(ids) == 80
    trained = text_of(tokenizer, ids[spans[0][0] + 1:spans[0][1] + 1])
    assert trained.startswith("r0 r1 r2") and reply.startswith(trained)
    assert data.report.truncated == {"response": 1}


def test_every_truncated_sample_is_counted(tmp_path, make_cfg, tokenizer):
    long = " ".join(["x"] * 100)
    records = [alpaca_record("q", "a"), alpaca_record(long, "a"), alpaca_record("q", "a", context=long)]
    path = write_jsonl(tmp_path / "a.jsonl", records)
    report = prepare_data(make_cfg(path, split="100,0,0", seq_length=64), tokenizer).report
    assert report.truncated == {"prompt": 2} and report.samples_kept == 3
