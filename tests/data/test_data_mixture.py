"""Data mixtures: weights and counts honoured, deterministic draws, exact resume, cache keys, the per-source
report, and bad mixture specs refused with the key and the fix."""

import json

import numpy as np
import pytest
import torch

from primus_bridge.cli.main import main as cli_main
from primus_bridge.config import ConfigError
from primus_bridge.config.resolve import validate
from primus_bridge.config.sections.data import parse_mixture
from primus_bridge.data import DataError, iterate_batches, prepare_data
from primus_bridge.data.batches import sample_indices

from pipeline_helpers import TOKENIZER_DIR, alpaca_record, chat, write_jsonl


@pytest.fixture
def sources(tmp_path):
    """An alpaca file of 3000 records and a sharegpt file of 500: a 0.3 weight on b upsamples it."""
    a = write_jsonl(tmp_path / "a.jsonl", [alpaca_record(f"Add {i} and {i}.", f"{2 * i}") for i in range(3000)])
    b = write_jsonl(tmp_path / "b.jsonl", [chat(f"Say hello to {i}.", f"Hello, {i}!") for i in range(500)])
    return a, b


def mixed_cfg(make_cfg, data_path, **data):
    cfg = make_cfg("unused", prompt_template="chatml", chat_format="chatml", **data)
    cfg.data.data_path = data_path
    return cfg


def document_sources(split, rows: list[int]) -> np.ndarray:
    docs = np.concatenate([split.documents(r) for r in rows])
    return np.searchsorted(split.source_doc_offsets, docs, side="right") - 1


@pytest.mark.parametrize("packing", [False, True])
def test_weights_are_honoured_within_2_percent_over_10k_samples(sources, make_cfg, tokenizer, packing):
    a, b = sources
    data = prepare_data(mixed_cfg(make_cfg, f"{a}:0.7,{b}:0.3", packing=packing), tokenizer)
    assert data.train.source_names == ("a", "b")
    samples, rows = 0, []
    for row in sample_indices(len(data.train), 0, seed=1234, epochs=None):
        rows.append(row)
        samples += len(data.train.documents(row))
        if samples >= 10_000:
            break
    shares = np.bincount(document_sources(data.train, rows), minlength=2) / samples
    assert abs(shares[0] - 0.7) < 0.02 and abs(shares[1] - 0.3) < 0.02, shares
    by_name = {s.name: s for s in data.report.sources}
    assert by_name["a"].repeats == pytest.approx(1.0) and by_name["b"].repeats > 2, "b is upsampled, a kept whole"


def test_sample_counts_and_upsampling_repeat_records_deterministically(sources, make_cfg, tokenizer, tmp_path):
    a, b = sources
    spec = [{"path": str(a), "samples": 1000}, {"path": str(b), "samples": 1100, "name": "greetings"}]
    data = prepare_data(mixed_cfg(make_cfg, spec, packing=False), tokenizer)
    counts = np.bincount(data.train.row_sources(), minlength=2)
    assert counts.tolist() == [1000, 1100]
    b_train_docs = data.report.sources[1].train_samples / data.report.sources[1].repeats
    occurrences = np.unique(data.train.row_docs[data.train.row_sources() == 1], return_counts=True)[1]
    assert len(occurrences) == round(b_train_docs) and set(occurrences.tolist()) <= {2, 3}, "whole copies + subset"
    again = prepare_data(mixed_cfg(make_cfg, spec, packing=False, cache_dir=str(tmp_path / "other")), tokenizer)
    assert not again.report.cache_hit
    assert np.array_equal(again.train.row_docs, data.train.row_docs), "a rebuilt cache draws the same samples"


def test_resume_continues_at_the_exact_next_sample(tmp_path, make_cfg, tokenizer):
    a = write_jsonl(tmp_path / "a.jsonl", [alpaca_record(f"q{i}", f"a{i}") for i in range(120)])
    b = write_jsonl(tmp_path / "b.jsonl", [chat(f"u{i}", f"r{i}") for i in range(40)])
    cfg = mixed_cfg(make_cfg, f"{a}:0.5,{b}:0.5")
    first = prepare_data(cfg, tokenizer)
    epoch_batches = -(-len(first.train) // 4)
    straight = list(iterate_batches(first.train, 4, seed=cfg.data.seed, epochs=3))
    stop = epoch_batches + 3  # mid-epoch, after an epoch boundary
    resumed_data = prepare_data(cfg, tokenizer)
    assert resumed_data.report.cache_hit
    resumed = list(iterate_batches(resumed_data.train, 4, start_index=stop * 4, seed=cfg.data.seed, epochs=3))
    assert len(resumed) == len(straight) - stop
    for want, got in zip(straight[stop:], resumed):
        assert torch.equal(want["input_ids"], got["input_ids"]) and torch.equal(want["labels"], got["labels"])


def test_cache_misses_when_the_mixture_changes(sources, make_cfg, tokenizer):
    a, b = sources
    base = prepare_data(mixed_cfg(make_cfg, f"{a}:0.7,{b}:0.3"), tokenizer).report
    assert prepare_data(mixed_cfg(make_cfg, f"{a}:0.7,{b}:0.3"), tokenizer).report.cache_hit
    folders = {base.cache_dir}
    for spec in (f"{a}:0.6,{b}:0.4", f"{b}:0.3,{a}:0.7", f"{a}:samples=2000,{b}:samples=500", f"{a},{b}",
                 [{"path": str(a), "weight": 0.7, "name": "x"}, {"path": str(b), "weight": 0.3}]):
        report = prepare_data(mixed_cfg(make_cfg, spec), tokenizer).report
        assert not report.cache_hit and report.cache_dir not in folders, spec
        folders.add(report.cache_dir)


def test_data_command_reports_each_source(sources, tmp_path, capsys):
    a, b = sources
    argv = ["data", "--data_path", f"{a}:0.7,{b}:0.3", "--tokenizer", str(TOKENIZER_DIR), "--prompt_template",
            "chatml", "--chat_format", "chatml", "--seq_length", "256", "--set", f"data.cache_dir={tmp_path / 'c'}"]
    assert cli_main([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    a_report, b_report = report["sources"]
    assert (a_report["name"], a_report["records_read"], b_report["records_read"]) == ("a", 3000, 500)
    assert a_report["tokens"] + b_report["tokens"] == report["tokens"]
    assert a_report["share"] == pytest.approx(0.7, abs=0.001) and b_report["share"] == pytest.approx(0.3, abs=0.001)
    assert report["dataset_format"] == "alpaca+sharegpt"
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert "sources           2" in out
    assert "  a               " in out and "3000 records" in out and "70.0% of the mixture" in out
    assert "  b               " in out and "500 records" in out and "30.0% of the mixture" in out


def test_a_single_path_with_commas_and_colons_is_one_path(tmp_path, make_cfg, tokenizer):
    odd = write_jsonl(tmp_path / "my,data:0.5", [alpaca_record(f"q{i}", f"a{i}") for i in range(20)])
    cfg = make_cfg(odd, dataset_format="alpaca")
    assert cfg.data.data_path == str(odd) and not cfg.data.is_mixture()
    data = prepare_data(cfg, tokenizer)
    assert data.report.samples_kept == 20 and data.report.sources == []
    assert not data.train.row_sources().any()


def test_mixture_entries_split_on_the_last_colon_only_before_a_spec():
    assert parse_mixture("data:v2/a.jsonl:0.5, b.jsonl:weight=2,c.jsonl:samples=30,d:x.jsonl") == [
        {"path": "data:v2/a.jsonl", "weight": 0.5}, {"path": "b.jsonl", "weight": 2.0},
        {"path": "c.jsonl", "samples": 30}, {"path": "d:x.jsonl"}]


@pytest.mark.parametrize(("data_path", "message"), [
    ("a.jsonl:0.7,b.jsonl", r"data\.data_path\[1\]\.weight: not set, but data\.data_path\[0\] sets weight; give "
                            "every source a weight, or none"),
    ([{"path": "a.jsonl", "weight": 0.7}, {"path": "b.jsonl", "weight": 0.3, "samples": 9}],
     r"data\.data_path\[1\]: sets both weight and samples; keep one"),
    ([{"path": "a.jsonl", "weight": -1}], r"data\.data_path\[0\]\.weight: Input should be greater than 0"),
    ("a.jsonl:samples=2.5,b.jsonl:samples=3", r"data\.data_path\[0\]\.samples: '2\.5' is not a whole number"),
    ([{"path": "x/a.jsonl"}, {"path": "y/a.jsonl"}], r"data\.data_path\[1\]\.name: 'a' is also data\.data_path\[0\]"
                                                     r"'s name; set a distinct name"),
    ([{"file": "a.jsonl"}], r"data\.data_path\[0\]\.file: unknown key; the keys are path, name, weight"),
    ([], r"data\.data_path: an empty list; name at least one source"),
    ([{"path": "a.jsonl", "name": "my data"}], r"data\.data_path\[0\]\.name: 'my data': use letters, digits"),
])
def test_bad_mixture_specs_name_the_key_and_the_fix(data_path, message):
    with pytest.raises(ConfigError, match=message):
        validate({"data": {"data_path": data_path}}, {})


def test_sources_that_disagree_on_the_template_are_refused(sources, make_cfg, tokenizer):
    a, b = sources
    cfg = make_cfg("unused", chat_format="chatml")
    cfg.data.data_path = [{"path": str(a), "prompt_template": "alpaca"}, {"path": str(b)}]
    with pytest.raises(ConfigError, match=r"data\.data_path\[1\]: renders with template 'chatml' .* but "
                                          r"data\.data_path\[0\] with 'alpaca' .*so they agree"):
        prepare_data(cfg, tokenizer)


def test_a_missing_source_file_is_named(sources, make_cfg, tokenizer, tmp_path):
    a, _ = sources
    cfg = mixed_cfg(make_cfg, f"{a}:0.5,{tmp_path / 'gone.jsonl'}:0.5")
    with pytest.raises(DataError, match="gone.jsonl: no such file or folder"):
        prepare_data(cfg, tokenizer)
