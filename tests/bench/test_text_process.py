"""The synthetic text process: deterministic per seed, never repeating, valid alpaca data, and the bench's data
source for the fp8-loss suite only."""

import hashlib
import json
from dataclasses import replace

import pytest

from primus_bridge.bench import text_process
from primus_bridge.bench.suites import SUITES, get_suite
from primus_bridge.bench.workspace import (
    SAMPLE_DATA, TEXT_PROCESS_RECORDS_PER_COPY, TOKENIZER_DIR, Workspace, prepare_case_data, rows_needed,
    write_case_data,
)


def test_same_seed_same_bytes_other_seed_other_text(tmp_path):
    first = text_process.write_text_process(40, tmp_path / "a.jsonl", seed=0).read_bytes()
    again = text_process.write_text_process(40, tmp_path / "b.jsonl", seed=0).read_bytes()
    other = text_process.write_text_process(40, tmp_path / "c.jsonl", seed=1).read_bytes()
    assert first == again and first != other
    assert text_process.build_structure(0).words != text_process.build_structure(1).words
    shorter = text_process.write_text_process(10, tmp_path / "d.jsonl", seed=0).read_bytes()
    assert first.startswith(shorter), "asking for more records keeps the first ones"


def test_pinned_bytes_of_the_default_seed(tmp_path):
    """The bench's data must be the same on every machine and Python: a change of the process shows here (and
    renames the workspace's cached files, which are named by the module's content)."""
    data = text_process.write_text_process(5, tmp_path / "a.jsonl").read_bytes()
    first = json.loads(data.splitlines()[0])
    assert first["instruction"] == "De pu nou thonmou thulbeand to?"
    assert hashlib.sha256(data).hexdigest()[:16] == PINNED_SHA256


PINNED_SHA256 = "a64e63f5fd5ff619"


def test_records_never_repeat_and_are_alpaca_records():
    records = list(text_process.text_process_records(3000))  # what the fp8-loss suite's case takes
    assert all(set(record) == {"instruction", "input", "output"} and record["input"] == "" for record in records)
    assert all(record["instruction"] and record["output"] for record in records)
    assert len({record["output"] for record in records}) == len(records)
    assert len({record["instruction"] for record in records}) == len(records)


def test_the_entropy_rate_is_about_four_nats_per_word():
    """What the loss can fall to: far above zero (a memorised sample reaches 1e-4); the number the description
    states."""
    process = text_process.TextProcess()
    words = sum(len(process.record()["output"].split()) for _ in range(500))
    assert 4.0 < process.output_nats / words < 4.4
    assert "about 4.2 nats a word" in text_process.DESCRIPTION


def test_the_data_pipeline_takes_every_record(tmp_path):
    from primus_bridge.config import PrimusConfig
    from primus_bridge.data import load_tokenizer, prepare_data

    data_file = text_process.write_text_process(60, tmp_path / "text.jsonl")
    cfg = PrimusConfig.model_validate({
        "model": {"tokenizer": str(TOKENIZER_DIR)},
        "data": {"data_path": str(data_file), "dataset_format": "alpaca", "prompt_template": "alpaca",
                 "split": "100,0,0", "seq_length": 1024, "packing": True, "cache_dir": str(tmp_path / "cache")},
    })
    report = prepare_data(cfg, load_tokenizer(cfg)).report
    assert report.records_read == report.samples_kept == 60
    assert not report.skipped and not report.dropped and not report.truncated
    assert report.trainable_tokens > 60 * 100


def test_only_the_fp8_loss_suite_trains_on_the_text_process():
    assert {name: suite.data_source for name, suite in SUITES.items()} == {
        "h200": "sample", "h100": "sample", "fp8-loss": "text-process", "cpu-smoke": "sample"}
    assert "synthetic text process" in get_suite("fp8-loss").description


def test_the_two_sources_never_share_a_cache_file_and_the_samples_name_is_unchanged(tmp_path):
    workspace = Workspace(tmp_path)
    digest = hashlib.sha256(SAMPLE_DATA.read_bytes()).hexdigest()[:12]
    assert workspace.data_file(3) == workspace.data_file(3, "sample") == \
        tmp_path / "data" / f"alpaca_sample-{digest}-x3.jsonl"
    text = workspace.data_file(3, "text-process")
    assert text.parent == tmp_path / "data" and text.name.startswith("text-process-seed0-")
    assert text.name.endswith(f"-n{3 * TEXT_PROCESS_RECORDS_PER_COPY}.jsonl")
    assert text != workspace.data_file(2, "text-process")
    write_case_data("text-process", 1, text)
    assert len(text.read_text(encoding="utf-8").splitlines()) == TEXT_PROCESS_RECORDS_PER_COPY
    sample = write_case_data("sample", 2, workspace.data_file(2))
    assert sample.read_text(encoding="utf-8") == SAMPLE_DATA.read_text(encoding="utf-8") * 2


@pytest.mark.parametrize("source", ["sample", "text-process"])
def test_case_data_comes_from_the_suites_source(source, tmp_path):
    suite = replace(get_suite("cpu-smoke"), data_source=source)
    case = suite.cases[1]
    data_file, rows, fingerprint = prepare_case_data(case, suite, tmp_path / "model", Workspace(tmp_path))
    assert rows >= rows_needed(case, suite) and len(fingerprint) == 64
    assert data_file.name.startswith("alpaca_sample-" if source == "sample" else "text-process-")
    if source == "text-process":
        lines = data_file.read_text(encoding="utf-8").splitlines()
        assert lines == [json.dumps(r, ensure_ascii=False) for r in text_process.text_process_records(len(lines))]
