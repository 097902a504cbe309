"""The one checkpoint / export marker: written and read back in one format, and every earlier format still read."""

import json
import logging

import pytest
import yaml

from primus_bridge.checkpoint import (
    EXPORT_MARKER,
    FORMAT_VERSION,
    MARKER_FILE,
    Marker,
    checkpoint_engine,
    export_marker,
    is_export_of,
    iteration_dir,
    read_export_marker,
    read_marker,
    write_marker,
)
from primus_bridge.checkpoint.store import newest_loadable, write_checkpoint
from primus_bridge.config import ConfigError, PrimusConfig
from primus_bridge.run.outputs import check_export_dir
from primus_bridge.run.resume_config import checkpoint_config, config_dump

HF_V1 = {"step": 12, "lora": True, "base_model": "/models/llama", "eos_token_id": 128009, "template": "llama3",
         "engine": "hf", "format_version": 1}
"""What the hf engine wrote before the shared marker (its CheckpointMeta dataclass, format_version 1)."""
MEGATRON_DICT = {"engine": "megatron", "hf_source": "/models/qwen", "lora": True, "base_checkpoint": "/ck/base",
                 "tokenizer": "/models/qwen", "transformer_impl": "local", "template": "chatml",
                 "config_changes": [{"step": 3, "changes": {"training.train_iters": [3, 5]}}], "step": 5}
"""What the megatron engine wrote before the shared marker (a plain dict, no version)."""
EXPORT_V0 = {"checkpoint": "/ck/iter_0000005", "save": "/ck", "step": 5, "exported_at": "2026-01-02T03:04:05+00:00"}


def write_json(path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def test_a_marker_is_written_last_in_the_current_format_and_reads_back_equal(tmp_path):
    marker = Marker(engine="hf", step=4, lora=True, optimizer_state=True, base_model="/models/llama",
                    tokenizer="tokenizer", config_file="run_config.yaml", eos_token_id=[1, 2], template="llama31",
                    template_date="26 Jul 2024", config_changes=[{"step": 2, "changes": {"a": [1, 2]}}])
    path = write_marker(tmp_path, marker)
    on_disk = json.loads(path.read_text())
    assert path.name == MARKER_FILE and on_disk["format_version"] == FORMAT_VERSION == 2
    assert on_disk["kind"] == "checkpoint" and on_disk["holds"] == "lora_adapter"
    assert on_disk["template"] == "llama31" and on_disk["template_date"] == "26 Jul 2024"
    assert read_marker(tmp_path) == marker
    assert not [p for p in tmp_path.iterdir() if p.name != MARKER_FILE], "no temporary left beside it"
    (tmp_path / "tokenizer").mkdir()
    assert marker.tokenizer_path(tmp_path) == str(tmp_path / "tokenizer")


def test_an_hf_format_1_marker_reads_as_an_hf_checkpoint(tmp_path):
    write_json(tmp_path / MARKER_FILE, HF_V1)
    (tmp_path / "tokenizer").mkdir()
    marker = read_marker(tmp_path)
    assert (marker.engine, marker.kind, marker.step, marker.lora, marker.holds) == \
        ("hf", "checkpoint", 12, True, "lora_adapter")
    assert (marker.base_model, marker.eos_token_id, marker.template) == ("/models/llama", 128009, "llama3")
    assert marker.config_file == "run_config.yaml" and marker.optimizer_state
    assert marker.tokenizer_path(tmp_path) == str(tmp_path / "tokenizer")
    assert checkpoint_engine(tmp_path) == "hf"


def test_a_megatron_plain_marker_reads_with_its_hf_source_as_base_model(tmp_path):
    write_json(tmp_path / MARKER_FILE, MEGATRON_DICT)
    marker = read_marker(tmp_path)
    assert (marker.engine, marker.step, marker.lora, marker.base_model) == ("megatron", 5, True, "/models/qwen")
    assert (marker.base_checkpoint, marker.transformer_impl, marker.template) == ("/ck/base", "local", "chatml")
    assert marker.config_changes == MEGATRON_DICT["config_changes"]
    assert marker.config_file == "primus_run_config.yaml"
    assert marker.tokenizer_path(tmp_path) == "/models/qwen"


def test_the_resume_config_check_finds_each_engines_config_through_the_marker(tmp_path):
    cfg = PrimusConfig.model_validate({"engine": "megatron", "training": {"train_iters": 7}})
    write_json(tmp_path / MARKER_FILE, MEGATRON_DICT)
    (tmp_path / "run_config.yaml").write_text("model: {hf_model_id: /models/qwen}\n")  # Megatron-Bridge's own
    (tmp_path / "primus_run_config.yaml").write_text(config_dump(cfg))
    assert checkpoint_config(tmp_path)["training"]["train_iters"] == 7
    write_json(tmp_path / MARKER_FILE, HF_V1)
    assert checkpoint_config(tmp_path) == {"model": {"hf_model_id": "/models/qwen"}}


def test_a_megatron_bridge_checkpoint_without_a_marker_names_its_hf_model(tmp_path):
    folder = iteration_dir(tmp_path, 20)
    folder.mkdir()
    assert read_marker(folder) is None, "an empty folder is no checkpoint"
    (folder / "run_config.yaml").write_text(yaml.safe_dump({"model": {"hf_model_id": "Qwen/Qwen2.5-0.5B"}}))
    marker = read_marker(folder)
    assert (marker.engine, marker.step, marker.base_model, marker.tokenizer) == \
        ("megatron", 20, "Qwen/Qwen2.5-0.5B", "Qwen/Qwen2.5-0.5B")
    assert marker.config_file is None and checkpoint_config(folder) is None
    (tmp_path / "latest_checkpointed_iteration.txt").write_text("20\n")
    assert checkpoint_engine(tmp_path) == "megatron"


def test_an_export_record_of_the_first_format_still_names_its_checkpoint(tmp_path):
    write_json(tmp_path / EXPORT_MARKER, EXPORT_V0)
    marker = read_export_marker(tmp_path)
    assert (marker.kind, marker.engine, marker.step, marker.checkpoint) == ("export", None, 5, "/ck/iter_0000005")
    assert is_export_of(tmp_path, "/ck/iter_0000005") and not is_export_of(tmp_path, "/ck/iter_0000004")


def test_an_export_marker_carries_what_the_checkpoint_says_and_is_recognised(tmp_path):
    save = tmp_path / "ck"
    checkpoint = write_checkpoint(save, 4, lambda folder: write_marker(folder, Marker(
        engine="megatron", step=4, lora=True, base_model="/models/llama", template="llama31",
        template_date="26 Jul 2024", config_file="primus_run_config.yaml")))
    out = tmp_path / "hf"
    write_marker(out, export_marker(checkpoint, 4, read_marker(checkpoint), "megatron"))
    on_disk = json.loads((out / EXPORT_MARKER).read_text())
    assert on_disk["kind"] == "export" and on_disk["format_version"] == FORMAT_VERSION
    assert on_disk["checkpoint"] == str(checkpoint.resolve()) and on_disk["save"] == str(save.resolve())
    assert (on_disk["template"], on_disk["template_date"], on_disk["holds"]) == \
        ("llama31", "26 Jul 2024", "merged_model_and_lora_adapter")
    assert is_export_of(out, checkpoint)
    assert check_export_dir(out, overwrite=False, checkpoint=iteration_dir(save, 6)) == out, "same run: replaced"


def test_a_damaged_or_newer_marker_is_named_and_a_damaged_export_record_is_no_export(tmp_path):
    (tmp_path / MARKER_FILE).write_text('{"engine": "hf", "st')
    with pytest.raises(ConfigError, match=f"{tmp_path / MARKER_FILE}: damaged marker"):
        read_marker(tmp_path)
    write_json(tmp_path / MARKER_FILE, {**HF_V1, "format_version": FORMAT_VERSION + 1})
    with pytest.raises(ConfigError, match="newer than this primus-bridge reads"):
        read_marker(tmp_path)
    (tmp_path / EXPORT_MARKER).write_text("")
    assert read_export_marker(tmp_path) is None


def _hf_checkpoint(save, step):
    return write_checkpoint(save, step, lambda folder: write_json(folder / MARKER_FILE, {**HF_V1, "step": step}))


def test_resume_falls_back_past_a_damaged_checkpoint_to_the_previous_complete_one(tmp_path, caplog):
    save = tmp_path / "ck"
    for step in (2, 4, 6):
        _hf_checkpoint(save, step)
    (iteration_dir(save, 6) / MARKER_FILE).write_text("")  # truncated to 0 bytes
    (iteration_dir(save, 4) / "weights.bin").write_bytes(b"")

    def problems(folder):
        empty = [p for p in folder.iterdir() if p.stat().st_size == 0]
        return [f"{p}: empty" for p in empty]

    with caplog.at_level(logging.WARNING, logger="primus_bridge"):
        assert newest_loadable(save, 6, "hf", problems) == (2, iteration_dir(save, 2))
    assert f"{iteration_dir(save, 6) / MARKER_FILE}: damaged marker" in caplog.text
    assert "falling back to step 2" in caplog.text and "iter_0000006; iter_0000004" in caplog.text

    (iteration_dir(save, 2) / "weights.bin").write_bytes(b"")
    with pytest.raises(ConfigError, match="no checkpoint in .* loads"):
        newest_loadable(save, 6, "hf", problems)


def test_another_engines_checkpoint_is_handed_back_for_the_caller_to_refuse(tmp_path):
    save = tmp_path / "ck"
    write_checkpoint(save, 3, lambda folder: write_json(folder / MARKER_FILE, MEGATRON_DICT))
    assert newest_loadable(save, 3, "hf", lambda folder: ["never asked"]) == (3, iteration_dir(save, 3))
