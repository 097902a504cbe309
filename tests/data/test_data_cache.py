"""Cache: a re-run loads instead of tokenizing, any input change misses, and an interrupted write never
leaves a cache that loads."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from primus_bridge.data import prepare_data
from primus_bridge.data.cache import load_cache

from pipeline_helpers import alpaca_record, write_jsonl


@pytest.fixture
def data_file(tmp_path):
    return write_jsonl(tmp_path / "a.jsonl", [alpaca_record(f"q{i}", f"a{i}") for i in range(30)])


def cache_folders(cfg) -> list[Path]:
    root = Path(cfg.data.cache_dir)
    return sorted(p for p in root.iterdir()) if root.exists() else []


def rows(data) -> list[list[int]]:
    return [row.input_ids.tolist() + row.labels.tolist() for row in data.train]


def test_second_run_hits_the_cache(data_file, make_cfg, tokenizer, monkeypatch):
    cfg = make_cfg(data_file)
    first = prepare_data(cfg, tokenizer)
    assert not first.report.cache_hit

    def no_tokenizing(*args, **kwargs):
        raise AssertionError("a cache hit must not tokenize")

    monkeypatch.setattr("primus_bridge.data.pipeline.encode_documents", no_tokenizing)
    second = prepare_data(cfg, tokenizer)
    assert second.report.cache_hit and second.report.cache_dir == first.report.cache_dir
    assert rows(second) == rows(first)
    assert isinstance(second.train.store.tokens, np.memmap)


@pytest.mark.parametrize("change", [{"prompt_template": "chatml"}, {"seq_length": 128}, {"mask_history": True},
                                    {"split": "90,10,0"}, {"seed": 7}, {"packing": False}])
def test_any_option_change_misses(data_file, make_cfg, tokenizer, change):
    base = prepare_data(make_cfg(data_file), tokenizer)
    changed = prepare_data(make_cfg(data_file, **change), tokenizer)
    assert not changed.report.cache_hit and changed.report.cache_dir != base.report.cache_dir


def test_data_content_change_misses(data_file, make_cfg, tokenizer):
    cfg = make_cfg(data_file)
    before = prepare_data(cfg, tokenizer).report.cache_dir
    with open(data_file, "a", encoding="utf-8") as handle:
        handle.write('{"instruction": "new", "output": "record"}\n')
    after = prepare_data(cfg, tokenizer).report
    assert not after.cache_hit and after.cache_dir != before and after.records_read == 31


def test_failed_write_leaves_nothing_that_loads(data_file, make_cfg, tokenizer, monkeypatch):
    cfg = make_cfg(data_file)
    real_save, saved = np.save, []

    def save_then_fail(path, array):
        if len(saved) == 3:
            raise OSError(28, "No space left on device")
        saved.append(path)
        real_save(path, array)

    monkeypatch.setattr("primus_bridge.data.cache.np.save", save_then_fail)
    with pytest.raises(OSError, match="No space left"):
        prepare_data(cfg, tokenizer)
    assert cache_folders(cfg) == []
    monkeypatch.undo()
    assert not prepare_data(cfg, tokenizer).report.cache_hit


KILL_MIDWAY = """
import os, sys
import numpy as np
from primus_bridge.config import PrimusConfig
from primus_bridge.data import load_tokenizer, prepare_data
real_save, count = np.save, [0]
def save_then_die(path, array):
    count[0] += 1
    if count[0] == 4:
        os._exit(9)   # like a kill -9: no cleanup runs
    real_save(path, array)
np.save = save_then_die
cfg = PrimusConfig.model_validate_json(sys.argv[1])
prepare_data(cfg, load_tokenizer(cfg))
"""


def test_killed_run_leaves_only_a_temporary_folder_that_never_loads(data_file, make_cfg, tokenizer):
    cfg = make_cfg(data_file)
    done = subprocess.run([sys.executable, "-c", KILL_MIDWAY, cfg.model_dump_json()], capture_output=True)
    assert done.returncode == 9, done.stderr.decode()
    leftovers = cache_folders(cfg)
    assert leftovers and all(p.name.startswith(".") and p.name.endswith(".tmp") for p in leftovers)
    assert all(load_cache(p) is None for p in leftovers)
    report = prepare_data(cfg, tokenizer).report
    assert not report.cache_hit
    assert load_cache(Path(report.cache_dir)) is not None


def test_folder_without_its_meta_file_is_rebuilt(data_file, make_cfg, tokenizer):
    cfg = make_cfg(data_file)
    folder = Path(prepare_data(cfg, tokenizer).report.cache_dir)
    (folder / "meta.json").unlink()
    rebuilt = prepare_data(cfg, tokenizer)
    assert not rebuilt.report.cache_hit and (folder / "meta.json").is_file()
    assert prepare_data(cfg, tokenizer).report.cache_hit
