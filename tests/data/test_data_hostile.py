"""Hostile data files: random bytes, truncated JSON, deep nesting, huge strings, wrong types, invalid UTF-8,
NaN/Infinity and duplicate keys give a DataError naming the file, never another exception or a hang."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from primus_bridge.data.errors import DataError
from primus_bridge.data.formats import NORMALIZERS
from primus_bridge.data.resolve import resolve_format
from primus_bridge.data.readers import read_records
from primus_bridge.config.sections.data import DataConfig

SETTINGS = settings(max_examples=100, deadline=3000, suppress_health_check=[HealthCheck.function_scoped_fixture])
SUFFIXES = (".jsonl", ".json")


def consume(path, dataset_format: str) -> None:
    """Read and normalize every record as the pipeline does; only DataError may come out."""
    data = DataConfig(data_path=str(path), dataset_format=dataset_format)
    try:
        fmt = resolve_format(data, [path])
        for raw in read_records([path]):
            if raw.problem is None:
                NORMALIZERS[fmt](raw)
            else:
                assert raw.where.startswith(str(path)) and raw.problem
    except DataError as err:
        assert str(path) in str(err) or "data.split" in str(err)
        assert err.problem.strip()


json_leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30))
json_values = st.recursive(json_leaves, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(st.sampled_from(
        ["instruction", "input", "output", "system", "history", "conversations", "messages", "from", "value",
         "role", "content", "x"]), kids, max_size=5)), max_leaves=25)


@SETTINGS
@given(data=st.binary(max_size=600), suffix=st.sampled_from(SUFFIXES), fmt=st.sampled_from(["auto", "alpaca"]))
def test_random_bytes(tmp_path, data, suffix, fmt):
    path = tmp_path / f"d{suffix}"
    path.write_bytes(data)
    consume(path, fmt)


@SETTINGS
@given(value=json_values, cut=st.integers(0, 400), suffix=st.sampled_from(SUFFIXES),
       fmt=st.sampled_from(["auto", "alpaca", "sharegpt", "openai"]))
def test_truncated_and_wrongly_typed_json(tmp_path, value, cut, suffix, fmt):
    text = json.dumps([value, value] if suffix == ".json" else value)
    path = tmp_path / f"d{suffix}"
    path.write_text(text[:cut] if cut < len(text) else text, encoding="utf-8")
    consume(path, fmt)


@SETTINGS
@given(value=json_values, fmt=st.sampled_from(["auto", "alpaca", "sharegpt", "openai"]))
def test_wrong_types_in_every_format(tmp_path, value, fmt):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(value) + "\n", encoding="utf-8")
    consume(path, fmt)


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("text", [
    "[" * 100_000 + "]" * 100_000,
    '{"instruction": ' + "[" * 50_000 + "]" * 50_000 + ', "output": "x"}',
    '{"instruction": "a", "output": NaN}', '{"instruction": "a", "output": Infinity}',
    '{"instruction": "a", "output": -Infinity}',
    '{"instruction": "a", "output": "b", "output": "c"}',
    '{"instruction": "a", "output": "' + "x" * 5_000_000 + '"',
    '{"instruction": "a", "output": 1e999}',
], ids=["deep", "deep-field", "nan", "inf", "-inf", "duplicate", "huge-unterminated", "overflow"])
def test_named_hostile_inputs(tmp_path, suffix, text):
    path = tmp_path / f"d{suffix}"
    path.write_text(text if suffix == ".jsonl" else f"[{text}]", encoding="utf-8")
    consume(path, "alpaca")


def test_invalid_utf8_inside_a_record(tmp_path):
    body = b'{"instruction": "caf\xe9", "output": "ok"}'
    lines = tmp_path / "d.jsonl"
    lines.write_bytes(body + b"\n")
    (raw,) = read_records([lines])
    assert raw.kind == "invalid UTF-8" and raw.where == f"{lines}:1"
    array = tmp_path / "d.json"
    array.write_bytes(b"[" + body + b"]")
    with pytest.raises(DataError, match="invalid UTF-8"):
        list(read_records([array]))


def test_huge_valid_string_is_read_whole(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"instruction": "a", "output": "x" * 20_000_000}) + "\n", encoding="utf-8")
    (raw,) = read_records([path])
    assert len(NORMALIZERS["alpaca"](raw).turns[0].assistant) == 20_000_000
