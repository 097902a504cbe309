"""Run-safety guards on the megatron engine, on the GPU: a NaN / Inf gradient norm ends the run with the
non-finite exit code (its CPU tests: tests/engine/megatron/test_nonfinite_grad_norm.py), a finished run's rerun
keeps its export, a resume may lengthen the schedule, and the export reads like any other file."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from primus_bridge.checkpoint import EXPORT_MARKER, iteration_dir, latest_iteration, read_marker
from primus_bridge.run.exit_codes import NONFINITE_EXIT_CODE

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def train(run_dir: Path, tiny_llama: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "primus_bridge.train", "--engine", "megatron", "--convert_from_hf",
               "--hf_model_name_or_path", str(tiny_llama),
               "--data_path", str(REPO / "examples/data/alpaca_sample.jsonl"),
               "--dataset_format", "alpaca", "--prompt_template", "alpaca", "--seq_length", "128",
               "--micro_batch_size", "2", "--global_batch_size", "4", "--save", str(run_dir / "checkpoints"),
               "--set", "training.eval_iters=0", "--set", "model.transformer_impl=local", *extra]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    previous = os.umask(0o022)
    try:
        return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    finally:
        os.umask(previous)


@pytest.mark.gpu
@pytest.mark.parametrize("cuda_graph", ["none", "full_iteration"])
def test_nan_ends_a_megatron_run_with_the_nonfinite_code(tiny_llama, tmp_path, cuda_graph):
    """The gradient-norm check stops the run (eager or recorded as a CUDA graph) before it saves that step."""
    done = train(tmp_path, tiny_llama, "--train_iters", "4", "--lr", "1e30", "--clip_grad", "0",
                 "--set", "checkpointing.save_interval=1", "--set", f"model.cuda_graph={cuda_graph}",
                 "--no_output_ok")
    assert done.returncode == NONFINITE_EXIT_CODE, done.stdout[-4000:] + done.stderr[-4000:]
    assert "error: training diverged at step" in done.stderr
    assert "found NaN in" in done.stderr or "found Inf in" in done.stderr
    stopped_at = int(done.stderr.split("training diverged at step ")[1].split(":")[0])
    latest = latest_iteration(tmp_path / "checkpoints")
    assert latest is None or latest < stopped_at


@pytest.mark.gpu
def test_export_marker_modes_rerun_and_longer_schedule(tiny_llama, tmp_path):
    export = tmp_path / "hf_model"
    first = train(tmp_path, tiny_llama, "--train_iters", "3", "--lr", "1e-4", "--convert_to_hf",
                  "--hf_save_path", str(export))
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    marker = json.loads((export / EXPORT_MARKER).read_text())
    assert marker["checkpoint"] == str(iteration_dir(tmp_path / "checkpoints", 3).resolve())
    assert (marker["kind"], marker["engine"], marker["format_version"], marker["template"]) == \
        ("export", "megatron", 2, "alpaca")
    weights = list(export.rglob("*.safetensors"))
    assert weights and all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in weights), \
        {str(p): oct(p.stat().st_mode) for p in weights}

    again = train(tmp_path, tiny_llama, "--train_iters", "3", "--lr", "1e-4", "--convert_to_hf",
                  "--hf_save_path", str(export))
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout[-4000:] + again.stderr[-4000:]

    longer = train(tmp_path, tiny_llama, "--train_iters", "5", "--lr", "1e-4", "--convert_to_hf",
                   "--hf_save_path", str(export))
    assert longer.returncode == 0, longer.stdout[-4000:] + longer.stderr[-4000:]
    assert "config changes honoured from step 3: training.train_iters: 3 -> 5" in longer.stdout
    assert json.loads((export / EXPORT_MARKER).read_text())["step"] == 5
    final_marker = json.loads((iteration_dir(tmp_path / "checkpoints", 5) / "primus_bridge.json").read_text())
    assert final_marker["config_changes"] == [{"step": 3, "changes": {"training.train_iters": [3, 5]}}]
    assert (final_marker["format_version"], final_marker["engine"], final_marker["step"]) == (2, "megatron", 5)

    refused = train(tmp_path, tiny_llama, "--train_iters", "5", "--lr", "1e-3")
    assert refused.returncode == 2 and "training.lr: 0.0001 -> 0.001" in refused.stderr, refused.stderr[-4000:]

    converted = tmp_path / "converted"
    for attempt in range(2):  # the second finds the export of the same checkpoint and keeps it
        done = convert(tmp_path / "checkpoints", converted)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "already holds the export of" in done.stdout
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in converted.rglob("*") if p.is_file())


@pytest.mark.gpu
def test_a_damaged_latest_checkpoint_resumes_from_the_one_before(tiny_llama, tmp_path):
    save = tmp_path / "checkpoints"
    keep_two = ("--lr", "1e-4", "--set", "checkpointing.save_interval=2", "--set", "checkpointing.keep_last=2")
    first = train(tmp_path, tiny_llama, "--train_iters", "4", *keep_two)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    data = sorted(iteration_dir(save, 4).glob("*.distcp"))
    os.truncate(data[0], data[0].stat().st_size // 2)

    resumed = train(tmp_path, tiny_llama, "--train_iters", "6", *keep_two)
    output = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, output[-8000:]
    assert f"{data[0]}: truncated" in output and "falling back to step 2" in output
    assert latest_iteration(save) == 6
    marker = read_marker(iteration_dir(save, 6))
    assert marker.config_changes == [{"step": 2, "changes": {"training.train_iters": [4, 6]}}]


def convert(checkpoint: Path, out: Path) -> subprocess.CompletedProcess:
    previous = os.umask(0o022)
    try:
        return subprocess.run([sys.executable, "-m", "primus_bridge.convert", "--load", str(checkpoint),
                               "--convert_to_hf", "--hf_save_path", str(out)], cwd=REPO, capture_output=True,
                              text=True, timeout=600)
    finally:
        os.umask(previous)
