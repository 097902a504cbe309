"""Readers: JSON Lines, JSON arrays, folders and Parquet, each record tagged with where it came from."""

import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from primus_bridge.data.errors import DataError
from primus_bridge.data.readers import data_files, read_records

from pipeline_helpers import alpaca_record, write_jsonl

RECORDS = [alpaca_record("Add 1 and 2.", "3"), alpaca_record("Capital of Peru?", "Lima", system="Be brief.")]


def values_and_places(path):
    return [(r.value, r.where) for r in read_records(data_files(str(path)))]


def test_json_lines_skip_blank_lines_and_name_each_line(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text("\ufeff" + json.dumps(RECORDS[0]) + "\n\n" + json.dumps(RECORDS[1]) + "\n", encoding="utf-8")
    assert values_and_places(path) == [(RECORDS[0], f"{path}:1"), (RECORDS[1], f"{path}:3")]


def test_pretty_printed_json_array_streams_with_line_and_index(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps(RECORDS, indent=2), encoding="utf-8")
    got = values_and_places(path)
    assert [v for v, _ in got] == RECORDS
    assert got[0][1] == f"{path}:2 (record 0)"
    second_line = json.dumps(RECORDS, indent=2).splitlines().index("  {", 2) + 1
    assert got[1][1] == f"{path}:{second_line} (record 1)"


def test_json_array_larger_than_the_read_buffer(tmp_path, monkeypatch):
    monkeypatch.setattr("primus_bridge.data.readers.ARRAY_READ_CHARS", 64)
    records = [alpaca_record(f"q{i}", "x" * (i * 7)) for i in range(40)]
    path = tmp_path / "big.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    assert [v for v, _ in values_and_places(path)] == records


def test_json_file_holding_json_lines(tmp_path):
    path = write_jsonl(tmp_path / "lines.json", RECORDS)
    assert [v for v, _ in values_and_places(path)] == RECORDS


def test_parquet_rows_are_named_by_index(tmp_path):
    path = tmp_path / "a.parquet"
    pq.write_table(pa.Table.from_pylist(RECORDS), path)
    got = values_and_places(path)
    assert [v["output"] for v, _ in got] == ["3", "Lima"]
    assert [w for _, w in got] == [f"{path}: row 0", f"{path}: row 1"]


def test_folder_reads_every_data_file_sorted_and_numbers_records_across_files(tmp_path):
    write_jsonl(tmp_path / "b.jsonl", RECORDS[1:])
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.json").write_text(json.dumps(RECORDS), encoding="utf-8")
    write_jsonl(tmp_path / "a.jsonl", RECORDS[:1])
    (tmp_path / "notes.txt").write_text("not data")
    records = list(read_records(data_files(str(tmp_path))))
    assert [r.where.split(":")[0].rsplit("/", 1)[-1] for r in records] == ["a.jsonl", "b.jsonl", "c.json", "c.json"]
    assert [r.ordinal for r in records] == [0, 1, 2, 3]


@pytest.mark.parametrize("text, problem", [
    ('{"instruction": "a", "output": }\n', "invalid JSON"),
    ('{"instruction": "a", "instruction": "b", "output": "c"}\n', "duplicate key 'instruction'"),
    ('{"instruction": "a", "output": NaN}\n', "NaN is not valid JSON"),
])
def test_bad_json_lines_come_out_as_problems_with_the_line(tmp_path, text, problem):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(RECORDS[0]) + "\n" + text, encoding="utf-8")
    good, bad = list(read_records([path]))
    assert good.problem is None
    assert bad.where == f"{path}:2" and problem in bad.problem


def test_invalid_utf8_line_is_a_problem_not_a_crash(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"instruction": "\xff\xfe", "output": "x"}\n')
    (bad,) = read_records([path])
    assert bad.kind == "invalid UTF-8" and bad.where == f"{path}:1"


@pytest.mark.parametrize("text, message", [
    ('[{"a": 1}, {"a": ', "invalid JSON"),
    ('[{"a": 1} {"a": 2}]', "broken JSON array: expected one of [',', ']']"),
    ('[{"a": 1}] trailing', "unexpected text after the closing ']'"),
])
def test_broken_json_array_raises_with_line_and_record(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(message)) as err:
        list(read_records([path]))
    assert str(err.value).startswith(f"{path}:1")


def test_missing_path_and_empty_folder_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="no such file or folder; check data.data_path"):
        data_files(str(tmp_path / "nope.jsonl"))
    with pytest.raises(DataError, match="folder has no data files"):
        data_files(str(tmp_path))


def test_unreadable_parquet_is_a_data_error(tmp_path):
    path = tmp_path / "x.parquet"
    path.write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        list(read_records([path]))
