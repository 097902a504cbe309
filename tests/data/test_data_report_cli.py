"""`primus-bridge data`: the text and --json reports, and bad input exiting 2 with file:line."""

import json

from primus_bridge.cli.main import main as cli_main

from pipeline_helpers import TOKENIZER_DIR, alpaca_record, write_jsonl


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
                     str(TOKENIZER_DIR), "--seq_length", "256", "--set", f"data.cache_dir={tmp_path}"])
    out = capsys.readouterr().out
    assert code == 0
    for heading in ("records read", "samples kept", "skipped (bad)", "dropped", "truncated", "trainable",
                    "packing", "length histogram", "--- sample 1", "--- sample 2"):
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
