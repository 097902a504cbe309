"""Run-safety guards on real hf-engine runs of the tiny Llama: a job that looks fine must be fine.

NaN stops the run before it saves (exit 3); damaged inputs and checkpoints are named (resume falls back);
two runs never share a checkpoint folder; a resume keeps the config it started with; a finished run's
rerun keeps its export; outputs read like any other file.
"""

import json
import os
import shutil
import signal
import stat
import time

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from primus_bridge.checkpoint import EXPORT_MARKER, iteration_dir, latest_iteration
from primus_bridge.logs import setup_logging
from primus_bridge.run.exit_codes import NONFINITE_EXIT_CODE, PREEMPTED_EXIT_CODE
from primus_bridge.run.lock import LOCK_FILE
from primus_bridge.train import main as train_main

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def logs_reach_caplog(monkeypatch):
    """In-process runs log through the project's handler; let caplog see those records too."""
    monkeypatch.setattr(setup_logging(), "propagate", True)


def full_finetune(config):
    """The same run as a full fine-tune (no LoRA section)."""
    values = yaml.safe_load(config.read_text())
    del values["lora"]
    config.write_text(yaml.safe_dump(values))
    return config


def test_nan_stops_the_run_before_it_saves_and_keeps_the_good_checkpoints(run_config, tmp_path, capsys):
    config = full_finetune(run_config(tmp_path, checkpointing={"save_interval": 1, "keep_last": 1}, export=True,
                                      train_iters=6, lr_warmup_iters=0))
    assert train_main(["--config", str(config), "--lr", "1e30", "--clip_grad", "0"]) == NONFINITE_EXIT_CODE
    errors = capsys.readouterr().err
    save = tmp_path / "checkpoints"
    assert "training diverged at step 2: loss nan, gradient norm nan" in errors
    assert f"the last good checkpoint is step 1 in {save}" in errors
    assert latest_iteration(save) == 1 and not iteration_dir(save, 2).exists()
    weights = load_file(iteration_dir(save, 1) / "model" / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values())
    assert not (tmp_path / "hf_model").exists(), "no export of a diverged run"


def test_skipped_nonfinite_steps_leave_the_weights_alone(run_config, tmp_path, capsys, caplog):
    config = full_finetune(run_config(tmp_path, checkpointing={"save_interval": 1}, train_iters=3,
                                      lr_warmup_iters=0, skip_nonfinite_steps=1))
    assert train_main(["--config", str(config), "--lr", "1e30", "--clip_grad", "0"]) == NONFINITE_EXIT_CODE
    errors = capsys.readouterr().err
    assert "step 2: loss nan, gradient norm nan; update skipped (1 of 1 allowed" in caplog.text
    assert "training diverged at step 3" in errors and "already skipped: 2" in errors
    save = tmp_path / "checkpoints"
    state = json.loads((iteration_dir(save, 2) / "trainer_state.json").read_text())
    assert state["skipped_steps"] == [2] and latest_iteration(save) == 2
    after_1, after_2 = (load_file(iteration_dir(save, s) / "model" / "model.safetensors") for s in (1, 2))
    assert all(torch.equal(after_1[name], after_2[name]) for name in after_1), "the skipped update was applied"


def test_nonfinite_starting_weights_are_refused_with_the_file(run_config, tiny_llama, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(tiny_llama, model)
    tensors = load_file(model / "model.safetensors")
    tensors["model.layers.1.mlp.down_proj.weight"][3, 5] = float("inf")
    save_file(tensors, str(model / "model.safetensors"), metadata={"format": "pt"})
    config = run_config(tmp_path / "run", train_iters=2)
    assert train_main(["--config", str(config), "--hf_model_name_or_path", str(model)]) == 2
    assert (f"error: {model / 'model.safetensors'}: tensor model.layers.1.mlp.down_proj.weight holds NaN or Inf"
            in capsys.readouterr().err)


@pytest.mark.parametrize("damage", ["truncated", "empty", "random"])
def test_damaged_model_files_are_named_before_any_work(run_config, tiny_llama, tmp_path, capsys, damage):
    model = tmp_path / "model"
    shutil.copytree(tiny_llama, model)
    weights = model / "model.safetensors"
    if damage == "truncated":
        os.truncate(weights, weights.stat().st_size - 1000)
    else:
        weights.write_bytes(b"" if damage == "empty" else os.urandom(50_000))
    started = time.perf_counter()
    assert train_main(["--config", str(run_config(tmp_path / "run")), "--hf_model_name_or_path", str(model)]) == 2
    assert f"error: hf_model_name_or_path: {weights}: damaged or not a safetensors file" in capsys.readouterr().err
    assert time.perf_counter() - started < 30


def test_a_damaged_checkpoint_falls_back_and_config_changes_are_checked(run_config, tmp_path, capsys, caplog):
    config = run_config(tmp_path, checkpointing={"save_interval": 2, "keep_last": 2}, train_iters=4, eval_iters=0)
    assert train_main(["--config", str(config)]) == 0
    save = tmp_path / "checkpoints"
    os.truncate(iteration_dir(save, 4) / "optimizer.pt", 1000)
    capsys.readouterr()

    assert train_main(["--config", str(config), "--lora_rank", "4", "--data_path", str(config)]) == 2
    refused = capsys.readouterr().err
    assert "cannot honour these changes" in refused and "lora.lora_rank: 8 -> 4" in refused
    assert "data.data_path:" in refused

    caplog.clear()
    assert train_main(["--config", str(config), "--train_iters", "6"]) == 0
    out = caplog.text
    assert f"checkpoint {iteration_dir(save, 4)} is damaged: {iteration_dir(save, 4) / 'optimizer.pt'}" in out
    assert "falling back to step 2" in out and "config changes honoured from step 2: training.train_iters: 4 -> 6" \
        in out
    final = iteration_dir(save, 6)
    saved = yaml.safe_load((final / "run_config.yaml").read_text())
    assert saved["lora"]["lora_rank"] == 8 and saved["training"]["train_iters"] == 6
    assert json.loads((final / "trainer_state.json").read_text())["config_changes"] == [
        {"step": 2, "changes": {"training.train_iters": [4, 6]}}]

    for step in (4, 6):
        (iteration_dir(save, step) / "model" / "adapter_model.safetensors").write_bytes(b"")
    assert train_main(["--config", str(config), "--train_iters", "6"]) == 2
    assert "no checkpoint in" in capsys.readouterr().err


def test_a_rerun_after_the_export_keeps_it_and_outputs_read_like_other_files(run_config, tmp_path, caplog):
    previous = os.umask(0o022)
    try:
        config = run_config(tmp_path, export=True, train_iters=2, eval_iters=0)
        assert train_main(["--config", str(config)]) == 0
        export, save = tmp_path / "hf_model", tmp_path / "checkpoints"
        marker = json.loads((export / EXPORT_MARKER).read_text())
        assert marker["checkpoint"] == str(iteration_dir(save, 2).resolve()) and marker["step"] == 2
        for path in [*export.rglob("*"), *save.rglob("*")]:
            if path.is_file():
                assert stat.S_IMODE(path.stat().st_mode) == 0o644, path

        caplog.clear()
        assert train_main(["--config", str(config)]) == 0  # a requeue of the finished job
        assert "nothing to do" in caplog.text and "hf engine:" not in caplog.text

        shutil.rmtree(export)  # killed during the export: only a temporary folder is left
        (tmp_path / ".hf_model.k1ll3d.tmp").mkdir()
        assert train_main(["--config", str(config)]) == 0
        assert (export / "model.safetensors").is_file() and not (tmp_path / ".hf_model.k1ll3d.tmp").exists()
    finally:
        os.umask(previous)


def test_ctrl_c_saves_and_a_second_run_on_the_folder_is_refused(run_config, subprocess_tools, tmp_path, capsys):
    config = run_config(tmp_path, checkpointing={"save_interval": 1000})
    process, lines = subprocess_tools["start_until"](config, "step 2/16 ")
    try:
        assert train_main(["--config", str(config)]) == 2
        assert f"is in use by another run (pid {process.pid} on host" in capsys.readouterr().err
    finally:
        process.send_signal(signal.SIGINT)
        lines.extend(process.stdout)
        code = process.wait(timeout=300)
    output = "".join(lines)
    assert code == PREEMPTED_EXIT_CODE, output
    stopped = latest_iteration(tmp_path / "checkpoints")
    assert stopped is not None and f"checkpoint: step {stopped} saved" in output and "Traceback" not in output
    assert not (tmp_path / "checkpoints" / LOCK_FILE).exists(), "the lock is released on exit"
