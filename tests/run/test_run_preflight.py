"""train's checks before any work: outputs writable and roomy, a data cache, something kept; all at once."""

import os
from pathlib import Path

import pytest

from primus_bridge.checkpoint import export_marker, iteration_dir, write_marker
from primus_bridge.checkpoint.store import write_checkpoint
from primus_bridge.config import PrimusConfig
from primus_bridge.planner.disk import checkpoint_bytes, export_bytes, lora_params
from primus_bridge.run.preflight import (
    cache_problem,
    engine_option_problems,
    finished_export,
    keep_nothing_problem,
    space_problems,
)
from primus_bridge.train import main as train_main

REPO = Path(__file__).resolve().parents[2]
DATA = str(REPO / "examples/data/alpaca_sample.jsonl")


def cfg(**values) -> PrimusConfig:
    return PrimusConfig.model_validate({"engine": "hf", "data": {"data_path": DATA}} | values)


@pytest.mark.parametrize("engine,section,values,other", [
    ("megatron", "model", {"liger_kernel": True}, "hf"),
    ("megatron", "model", {"attn_implementation": "flex_attention"}, "hf"),
    ("hf", "model", {"transformer_impl": "local"}, "megatron"),
    ("hf", "model", {"head_loss": "chunked"}, "megatron"),
    ("hf", "model", {"cuda_graph": "full_iteration"}, "megatron"),
    ("hf", "precision", {"fp8_frozen_base": True}, "megatron"),
])
def test_an_option_of_the_other_engine_is_refused_not_dropped(engine, section, values, other):
    """engine: auto, as a config that names neither engine resolves at run time."""
    (key, value), = values.items()
    config = cfg(engine="auto", lora={"use_lora": True}, **{section: values})
    problems = engine_option_problems(config, engine)
    assert len(problems) == 1
    assert problems[0].startswith(f"{section}.{key}: {value!r} is an option of the {other} engine")
    assert problems[0].endswith(f"remove it or set engine: {other}")
    assert engine_option_problems(config, other) == []
    assert engine_option_problems(cfg(engine="auto", lora={"use_lora": True}), engine) == []


def test_a_run_that_keeps_nothing_is_refused_unless_asked_for():
    assert "would train and keep nothing" in keep_nothing_problem(cfg(), "megatron")
    assert keep_nothing_problem(cfg(checkpointing={"no_output_ok": True}), "hf") is None
    assert keep_nothing_problem(cfg(checkpointing={"save": "/ck"}), "hf") is None
    assert keep_nothing_problem(cfg(convert_to_hf=True, hf_save_path="/out"), "megatron") is None
    assert "exports from its final checkpoint" in keep_nothing_problem(cfg(convert_to_hf=True, hf_save_path="/o"), "hf")


def test_every_problem_is_reported_at_once_before_any_work(tmp_path, capsys):
    """README's quick-start 'SFT from a Hugging Face model' command without --save, and unwritable outputs."""
    (tmp_path / "file").write_text("not a folder")
    code = train_main(["--engine", "hf", "--hf_model_name_or_path", str(tmp_path / "absent-model"), "--data_path",
                       str(tmp_path / "absent.jsonl"), "--lr", "5e-6", "--train_iters", "5000"])
    assert code == 2
    errors = capsys.readouterr().err
    assert "would train and keep nothing" in errors and "data.data_path" in errors
    code = train_main(["--engine", "hf", "--data_path", DATA, "--save", str(tmp_path / "file" / "ck"),
                       "--convert_to_hf", "--hf_save_path", str(tmp_path / "file" / "hf"),
                       "--set", f"training.tensorboard_dir={tmp_path / 'file' / 'tb'}"])
    errors = capsys.readouterr().err.splitlines()
    assert code == 2
    for key in ("checkpointing.save", "hf_save_path", "training.tensorboard_dir"):
        assert any(line.startswith(f"error: {key}: ") and "is a file, not a folder" in line for line in errors), key


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused(tmp_path):
    from primus_bridge.run.preflight import writable_problems

    (tmp_path / "ro").mkdir(mode=0o555)
    problems = writable_problems(cfg(checkpointing={"save": str(tmp_path / "ro" / "ck")}))
    assert "Permission denied" in problems["checkpointing.save"]


def test_room_for_one_checkpoint_by_the_planners_estimate(tmp_path, caplog):
    """A 405B full fine-tune needs terabytes per checkpoint; a LoRA adapter of it a few hundred MiB."""
    big = cfg(recipe="llama31_405b", checkpointing={"save": str(tmp_path / "ck")})
    problems = space_problems(big, "hf")
    assert len(problems) == 1 and "one checkpoint of this run needs about" in problems[0] and "GiB" in problems[0]
    assert space_problems(big.model_copy(update={"force": True}), "hf") == [] and "planner estimate" in caplog.text
    lora = cfg(recipe="llama31_405b", checkpointing={"save": str(tmp_path / "ck")},
               lora={"use_lora": True, "lora_rank": 16, "lora_target_modules": ["q_proj", "v_proj"]})
    assert space_problems(lora, "hf") == []


def test_size_estimates_follow_the_shape():
    import recipes

    shape = recipes.recipe("llama3_8b").shape
    full = cfg(recipe="llama3_8b")
    assert checkpoint_bytes(full, shape, "hf") == int(shape.total_params() * 12 * 1.05)
    assert checkpoint_bytes(full, shape, "megatron") > checkpoint_bytes(full, shape, "hf")
    assert export_bytes(full, shape) == int(shape.total_params() * 2 * 1.05)
    # q_proj 4096 -> 4096 and v_proj 4096 -> 1024 (GQA), rank 8, 32 layers
    lora = cfg(lora={"use_lora": True, "lora_rank": 8, "lora_target_modules": ["q_proj", "v_proj"]})
    assert lora_params(shape, lora) == 32 * 8 * (4096 + 4096 + 4096 + 1024)


def test_the_data_cache_falls_back_when_the_working_folder_is_read_only(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".cache").write_text("a file where the cache folder would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    config = cfg()
    assert cache_problem(config) is None
    assert config.data.cache_dir == str(tmp_path / "xdg" / "primus-bridge" / "data")
    assert "caching tokenized data in" in caplog.text
    explicit = cfg(data={"data_path": DATA, "cache_dir": str(tmp_path / ".cache" / "data")})
    assert cache_problem(explicit).startswith(f"data.cache_dir: {tmp_path / '.cache' / 'data'} cannot be written")


def test_a_finished_and_exported_run_is_recognised(tmp_path):
    save, out = tmp_path / "ck", tmp_path / "hf"
    done = cfg(checkpointing={"save": str(save)}, convert_to_hf=True, hf_save_path=str(out),
               training={"train_iters": 4})
    for step in (2, 4):
        write_checkpoint(save, step, lambda folder: (folder / "w").write_text("w"))
    assert finished_export(done) is None
    out.mkdir()
    write_marker(out, export_marker(iteration_dir(save, 2), 2, None, "hf"))
    assert finished_export(done) is None, "an export of an earlier step"
    write_marker(out, export_marker(iteration_dir(save, 4), 4, None, "hf"))
    assert finished_export(done) == out
    assert finished_export(done.model_copy(update={"training": done.training.model_copy(update={"train_iters": 8})})) \
        is None


def test_each_missing_source_of_a_mixture_is_named_by_its_key(tmp_path):
    from primus_bridge.run.preflight import input_problems

    present = tmp_path / "a.jsonl"
    present.write_text('{"instruction": "x", "output": "y"}\n')
    cfg = PrimusConfig.model_validate({"data": {"data_path": f"{present}:0.7,{tmp_path / 'b.jsonl'}:0.3"}})
    assert input_problems(cfg) == [f"data.data_path[1]: {tmp_path / 'b.jsonl'}: no such file or folder; "
                                   "check --data_path"]
