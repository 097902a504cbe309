"""`primus-bridge data`: the text and --json reports, and bad input exiting 2 with file:line."""

import json

import pytest

from primus_bridge.cli.main import main as cli_main
from primus_bridge.data.findings import file_of, find_placeholder
from primus_bridge.data.records import Conversation, Step, Turn

from pipeline_helpers import TOKENIZER_DIR, alpaca_record, chat, write_jsonl


def test_acceptance_command_prints_a_json_report(repo, tmp_path, capsys):
    code = cli_main(["data", "--data_path", str(repo / "examples/data/sharegpt_sample.jsonl"), "--dataset_format",
                     "sharegpt", "--prompt_template", "chatml", "--tokenizer", str(TOKENIZER_DIR), "--seq_length",
                     "512", "--json", "--set", f"data.cache_dir={tmp_path}"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert 0 < report["trainable_pct"] < 100
    assert 0 < report["packing_efficiency"] <= 1
    assert report["records_read"] == report["samples_kept"] == 100
    assert report["template"] == "chatml" and len(report["samples"]) == 2
    assert "⟦" in report["samples"][0]


def test_text_report_has_every_section(repo, tmp_path, capsys):
    code = cli_main(["data", "--data_path", str(repo / "examples/data/alpaca_sample.jsonl"), "--tokenizer",
                     str(TOKENIZER_DIR), "--seq_length", "256", "--prompt_template", "alpaca",
                     "--set", f"data.cache_dir={tmp_path}"])
    out = capsys.readouterr().out
    assert code == 0
    for heading in ("records read", "samples kept", "skipped (bad)", "dropped", "truncated", "unused columns",
                    "placeholders", "trainable", "packing", "length histogram", "--- sample 1", "--- sample 2"):
        assert heading in out, heading
    assert "format / template alpaca / alpaca" in out


def test_bad_record_exits_2_with_file_line(tmp_path, capsys):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(alpaca_record("q", "a")) + "\n" + '{"instruction": "q", "output": 5}\n'
                    + json.dumps(alpaca_record("q2", "a2")) + "\n")
    args = ["data", "--data_path", str(path), "--tokenizer", str(TOKENIZER_DIR), "--set", f"data.cache_dir={tmp_path}"]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert f"error: {path}:2: field 'output' must be a string, got int" in err and "Traceback" not in err
    assert cli_main(args + ["--skip_bad_records", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] == {"wrong type": 1}


def test_missing_data_path_is_a_config_error(capsys):
    assert cli_main(["data", "--tokenizer", str(TOKENIZER_DIR)]) == 2
    assert "data.data_path: not set" in capsys.readouterr().err


def test_unknown_template_choice_is_rejected(tmp_path, capsys):
    path = write_jsonl(tmp_path / "d.jsonl", [alpaca_record("q", "a")])
    assert cli_main(["data", "--data_path", str(path), "--prompt_template", "vicuna"]) == 2
    assert "prompt_template" in capsys.readouterr().err


def data_args(path, tmp_path, *extra: str) -> list[str]:
    return ["data", "--data_path", str(path), "--tokenizer", str(TOKENIZER_DIR), "--seq_length", "256",
            "--set", f"data.cache_dir={tmp_path / 'cache'}", *extra]


def test_samples_flag_shows_n_marked_samples_from_a_fresh_build_and_from_the_cache(tmp_path, capsys):
    path = write_jsonl(tmp_path / "d.jsonl", [alpaca_record(f"q{i}", f"answer {i}") for i in range(6)])
    assert cli_main(data_args(path, tmp_path, "--json", "--samples", "4")) == 0
    built = json.loads(capsys.readouterr().out)
    assert not built["cache_hit"] and len(built["samples"]) == 4
    assert [s.count("⟦") for s in built["samples"]] == [1] * 4 and "answer 3" in built["samples"][3]
    assert cli_main(data_args(path, tmp_path, "--json", "--samples", "9")) == 0
    cached = json.loads(capsys.readouterr().out)
    assert cached["cache_hit"] and cached["samples"][:4] == built["samples"] and len(cached["samples"]) == 6
    assert cli_main(data_args(path, tmp_path, "--samples", "0")) == 0
    out = capsys.readouterr().out
    assert "--- sample" not in out and "records read" in out
    assert cli_main(data_args(path, tmp_path)) == 0
    assert "--- sample 2" in (out := capsys.readouterr().out) and "--- sample 3" not in out


@pytest.mark.parametrize("value", ["-1", "two"])
def test_samples_flag_rejects_what_is_not_a_count(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exit_:
        cli_main(data_args(tmp_path / "d.jsonl", tmp_path, "--samples", value))
    assert exit_.value.code == 2 and "--samples" in capsys.readouterr().err


def test_unused_columns_and_placeholders_are_reported_per_file(tmp_path, capsys, caplog):
    folder = tmp_path / "data"
    folder.mkdir()
    first = write_jsonl(folder / "a.jsonl", [
        alpaca_record("Greet {{name}}.", "Hello!", id=1, source="web"),
        alpaca_record("Say hi.", "Hi {{ user_name }}!", id=2, tools="[]"),
        alpaca_record("Say bye.", "Bye.", id=3, label=None),
        alpaca_record("Braces {{ 1 }} and {{}} are not placeholders.", "Ok."),
    ])
    second = write_jsonl(folder / "b.jsonl", [alpaca_record("Greet.", "Hi.", id=4)])
    with caplog.at_level("WARNING", logger="primus_bridge"):
        assert cli_main(data_args(folder, tmp_path, "--json", "--samples", "0")) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["unused_columns"] == [
        {"file": str(first), "column": "id", "records": 3, "first": f"{first}:1"},
        {"file": str(first), "column": "source", "records": 1, "first": f"{first}:1"},
        {"file": str(first), "column": "tools", "records": 1, "first": f"{first}:2"},
        {"file": str(second), "column": "id", "records": 1, "first": f"{second}:1"},
    ]
    assert report["placeholders"] == [{"file": str(first), "records": 2, "first": f"{first}:1", "example": "{{name}}"}]
    warnings = [r.getMessage() for r in caplog.records if r.name == "primus_bridge" and r.levelname == "WARNING"]
    assert len(warnings) == 5 and sum("column 'id'" in w for w in warnings) == 2
    assert (f"data: {first}: 3 record(s) have column 'id', which the alpaca format does not read (first: "
            f"{first}:1); it is not trained on") in warnings
    assert (f"data: {first}: 2 record(s) contain a template placeholder such as {{{{name}}}} (first: {first}:1); "
            "it is trained on as literal text") in warnings
    caplog.clear()
    with caplog.at_level("WARNING", logger="primus_bridge"):
        assert cli_main(data_args(folder, tmp_path, "--samples", "0")) == 0  # a cache hit warns the same
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == warnings
    text = capsys.readouterr().out
    assert f"unused columns    3 records have 'id', which the alpaca format does not read (first: {first}:1)" in text
    assert f"placeholders      2 records contain a placeholder such as {{{{name}}}} (first: {first}:1)" in text


def test_message_keys_a_chat_format_does_not_read_are_reported(tmp_path, capsys):
    record = chat("q", "a") | {"conversations": [{"from": "human", "value": "q"},
                                                 {"from": "gpt", "value": "a", "weight": 0}]}
    path = write_jsonl(tmp_path / "s.jsonl", [record, chat("q2", "a2")])
    assert cli_main(data_args(path, tmp_path, "--json", "--chat_format", "chatml")) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["unused_columns"] == [{"file": str(path), "column": "conversations[].weight", "records": 1,
                                         "first": f"{path}:1"}]
    assert report["placeholders"] == []


def test_clean_data_reports_none(repo, tmp_path, capsys):
    assert cli_main(data_args(repo / "examples/data/alpaca_sample.jsonl", tmp_path)) == 0
    out = capsys.readouterr().out
    assert "unused columns    none" in out and "placeholders      none" in out


@pytest.mark.parametrize("where, path", [
    ("/d/a.jsonl:12", "/d/a.jsonl"), ("/d/a:1/b.json:3 (record 2)", "/d/a:1/b.json"),
    ("/d/t.parquet: row 40", "/d/t.parquet"),
])
def test_file_of_every_reader_position(where, path):
    assert file_of(where) == path


def test_placeholders_are_found_in_every_text_of_a_conversation():
    def conv(*texts, system=None, step=""):
        turn = Turn(texts[0], texts[1], texts[2] if len(texts) > 2 else "", steps=(Step("tool", step),))
        return Conversation(system, (turn,), "f:1", 0)

    assert find_placeholder(conv("a", "b")) is None
    assert find_placeholder(conv("a", "b", system="Hi {{ who }}")) == "{{ who }}"
    assert find_placeholder(conv("a", "b", "ctx {{input_text}}")) == "{{input_text}}"
    assert find_placeholder(conv("a", "b", step="{{result}}")) == "{{result}}"
    assert find_placeholder(conv("{{ 1 }} {{}} {{a b}}", "{{-x}}")) is None
