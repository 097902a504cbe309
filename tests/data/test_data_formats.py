"""Formats -> conversations, auto-detection, and every bad-input case named by file:line."""

import json

import pytest

from primus_bridge.data import DataError, prepare_data
from primus_bridge.data.formats import NORMALIZERS, detect_format
from primus_bridge.data.records import RawRecord, Turn

from pipeline_helpers import alpaca_record, chat, write_jsonl


def normalize(fmt: str, value: dict):
    return NORMALIZERS[fmt](RawRecord(value, "f.jsonl:1", 0))


def test_alpaca_with_input_system_and_history():
    conv = normalize("alpaca", alpaca_record("Sort.", "1, 2", context="2, 1", system="Be brief.",
                                             history=[["Hi", "Hello!"]]))
    assert conv.system == "Be brief."
    assert conv.turns == (Turn("Hi", "Hello!"), Turn("Sort.", "1, 2", "2, 1"))
    assert conv.turns[1].user_text() == "Sort.\n\n2, 1"


def test_sharegpt_roles_system_turn_and_top_level_system():
    record = {"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "a"},
                                {"from": "gpt", "value": "b"}, {"from": "user", "value": "c"},
                                {"from": "assistant", "value": "d"}]}
    conv = normalize("sharegpt", record)
    assert conv.system == "S" and conv.turns == (Turn("a", "b"), Turn("c", "d"))
    assert normalize("sharegpt", chat("a", "b", system="T")).system == "T"
    assert normalize("sharegpt", chat("a", "b", system="")).system is None


def test_openai_messages():
    conv = normalize("openai", {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "q"},
                                             {"role": "assistant", "content": "r"}]})
    assert conv.messages() == [{"role": "system", "content": "S"}, {"role": "user", "content": "q"},
                               {"role": "assistant", "content": "r"}]


def test_an_empty_system_message_is_kept_and_a_blank_system_field_means_none():
    empty = normalize("openai", {"messages": [{"role": "system", "content": ""}, {"role": "user", "content": "q"},
                                              {"role": "assistant", "content": "r"}]})
    assert empty.system == "" and empty.messages()[0] == {"role": "system", "content": ""}
    sharegpt = normalize("sharegpt", {"conversations": [{"from": "system", "value": ""},
                                                        {"from": "human", "value": "q"},
                                                        {"from": "gpt", "value": "r"}]})
    assert sharegpt.system == ""
    assert normalize("sharegpt", {"system": "  ", "conversations": [{"from": "human", "value": "q"},
                                                                   {"from": "gpt", "value": "r"}]}).system is None
    assert normalize("alpaca", {"instruction": "q", "output": "r", "system": ""}).system is None


@pytest.mark.parametrize("record, fmt", [
    (alpaca_record("a", "b"), "alpaca"), (chat("a", "b"), "sharegpt"),
    ({"messages": [{"role": "user", "content": "a"}]}, "openai"),
])
def test_auto_detection(record, fmt):
    assert detect_format(RawRecord(record, "f:1", 0)) == fmt


@pytest.mark.parametrize("record", [{"text": "plain"}, {"instruction": "a", "output": "b", "messages": []}, [1, 2]])
def test_auto_detection_refuses_to_guess(record):
    with pytest.raises(DataError, match="set data.dataset_format"):
        detect_format(RawRecord(record, "f:1", 0))


BAD_CASES = {
    "malformed JSON line": ("alpaca", '{"instruction": "a", "output": "b"', "invalid JSON"),
    "missing field": ("alpaca", {"instruction": "a"}, "missing field 'output'"),
    "non-string value": ("alpaca", {"instruction": "a", "output": 7}, "field 'output' must be a string, got int"),
    "non-string turn": ("sharegpt", {"conversations": [{"from": "human", "value": ["a"]}]},
                        "conversations[0].value must be a string, got list"),
    "unknown role": ("sharegpt", {"conversations": [{"from": "bot", "value": "a"}]},
                     "unknown role 'bot' in conversations[0].from"),
    "unknown openai role": ("openai", {"messages": [{"role": "function", "content": "a"}]},
                            "unknown role 'function'"),
    "empty conversation": ("sharegpt", {"conversations": []}, "empty conversation"),
    "only a system prompt": ("openai", {"messages": [{"role": "system", "content": "s"}]}, "empty conversation"),
    "not alternating": ("sharegpt", {"conversations": chat("a", "b")["conversations"]
                                     + [{"from": "gpt", "value": "c"}]},
                        "conversations[2] is 'assistant', expected 'user'"),
    "starts with the assistant": ("openai", {"messages": [{"role": "assistant", "content": "a"}]},
                                  "messages[0] is 'assistant', expected 'user'"),
    "ends with the user": ("sharegpt", chat("a", "b", "c"), "ends with a user turn"),
    "empty output": ("alpaca", {"instruction": "a", "output": "  "}, "empty output"),
    "empty reply turn": ("sharegpt", chat("a", ""), "empty output"),
    "not an object": ("alpaca", ["a", "b"], "record must be a JSON object, got list"),
    "bad history": ("alpaca", {"instruction": "a", "output": "b", "history": [["x"]]}, "history[0] must be"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_record_raises_with_file_line_and_what_is_wrong(tmp_path, make_cfg, tokenizer, case):
    fmt, bad, message = BAD_CASES[case]
    good = alpaca_record("q", "r") if fmt == "alpaca" else (chat("q", "r") if fmt == "sharegpt" else
                                                            {"messages": [{"role": "user", "content": "q"},
                                                                          {"role": "assistant", "content": "r"}]})
    path = tmp_path / "data.jsonl"
    bad_line = bad if isinstance(bad, str) else json.dumps(bad)
    path.write_text(json.dumps(good) + "\n" + json.dumps(good) + "\n" + bad_line + "\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        prepare_data(make_cfg(path, dataset_format=fmt, prompt_template="chatml"), tokenizer)
    assert str(err.value).startswith(f"{path}:3: ")
    assert message in str(err.value) and "--skip_bad_records" in str(err.value)


def test_skip_bad_records_counts_and_lists_them(tmp_path, make_cfg, tokenizer):
    path = tmp_path / "data.jsonl"
    lines = [json.dumps(alpaca_record(f"q{i}", f"r{i}")) for i in range(6)]
    lines[2], lines[4] = '{"instruction": ', json.dumps({"instruction": "x", "output": 3})
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = prepare_data(make_cfg(path, skip_bad_records=True, split="100,0,0"), tokenizer).report
    assert (report.records_read, report.samples_kept) == (6, 4)
    assert report.skipped == {"invalid JSON": 1, "wrong type": 1}
    assert [e.split(": ")[0] for e in report.skipped_examples] == [f"{path}:3", f"{path}:5"]


def test_json_array_and_parquet_errors_name_record_and_row(tmp_path, make_cfg, tokenizer):
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = [alpaca_record("q", "r"), {"instruction": "q", "output": ""}]
    array = tmp_path / "a.json"
    array.write_text(json.dumps(records), encoding="utf-8")
    with pytest.raises(DataError, match=r"a\.json:1 \(record 1\): empty output"):
        prepare_data(make_cfg(array), tokenizer)
    table = tmp_path / "t.parquet"
    pq.write_table(pa.Table.from_pylist(records), table)
    with pytest.raises(DataError, match=r"t\.parquet: row 1: empty output"):
        prepare_data(make_cfg(table), tokenizer)


def test_every_format_and_reader_gives_the_same_tokens(tmp_path, make_cfg, tokenizer):
    import pyarrow as pa
    import pyarrow.parquet as pq

    convs = [("What is 2 + 2?", "4."), ("Capital of Japan?", "Tokyo.")]
    sharegpt = [chat(q, a, system="S") for q, a in convs]
    openai = [{"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": q},
                            {"role": "assistant", "content": a}]} for q, a in convs]
    alpaca = [alpaca_record(q, a, system="S") for q, a in convs]
    write_jsonl(tmp_path / "s.jsonl", sharegpt)
    (tmp_path / "o.json").write_text(json.dumps(openai), encoding="utf-8")
    pq.write_table(pa.Table.from_pylist(alpaca), tmp_path / "a.parquet")
    rows = []
    for name in ("s.jsonl", "o.json", "a.parquet"):
        data = prepare_data(make_cfg(tmp_path / name, prompt_template="chatml", split="100,0,0"), tokenizer)
        rows.append([(r.input_ids.tolist(), r.labels.tolist()) for r in data.train])
    assert rows[0] == rows[1] == rows[2]


def test_auto_detection_needs_the_first_records_to_agree(tmp_path, make_cfg, tokenizer):
    path = write_jsonl(tmp_path / "mixed.jsonl", [alpaca_record("q", "a"), chat("q", "a"), alpaca_record("q", "a")])
    with pytest.raises(DataError, match=r"first records disagree \(.*mixed\.jsonl:1 looks alpaca, .*:2 looks sharegpt"):
        prepare_data(make_cfg(path), tokenizer)


def test_first_bad_record_in_file_order_is_reported(tmp_path, make_cfg, tokenizer):
    path = tmp_path / "d.jsonl"
    path.write_text('{"instruction": "q1", "output": "a1"}\n{"instruction": "q2", "output": 5}\n'
                    '{"instruction": "q3"\n', encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{path}:2: field 'output' must be a string"):
        prepare_data(make_cfg(path), tokenizer)
    path.write_text('{"instruction": "q3"\n["not", "an", "object"]\n', encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{path}:1: invalid JSON: Expecting ',' delimiter at column 21"):
        prepare_data(make_cfg(path), tokenizer)
