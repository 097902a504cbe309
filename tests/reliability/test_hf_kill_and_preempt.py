"""Real signals against a real training process: SIGKILL then resume is bit-identical to an uninterrupted run;
SIGTERM saves after the current step and exits with PREEMPTED_EXIT_CODE."""

import json
import signal

import pytest
import torch
from safetensors.torch import load_file

from primus_bridge.checkpoint import iteration_dir, latest_iteration
from primus_bridge.train import PREEMPTED_EXIT_CODE

pytestmark = pytest.mark.slow

FINAL_STEP = 16


@pytest.fixture(scope="module")
def reference(run_config, subprocess_tools, tmp_path_factory):
    """An uninterrupted run."""
    run_dir = tmp_path_factory.mktemp("reference")
    done = subprocess_tools["run"](run_config(run_dir))
    assert done.returncode == 0, done.stdout + done.stderr
    return run_dir / "checkpoints"


def run_until(subprocess_tools, config, marker: str, sig: signal.Signals) -> tuple[int, str]:
    """Start training, send `sig` once a log line contains `marker`, return (exit code, output)."""
    process, lines = subprocess_tools["start_until"](config, marker)
    process.send_signal(sig)
    lines.extend(process.stdout)
    return process.wait(timeout=300), "".join(lines)


def final_state(save) -> tuple[dict, list[float]]:
    checkpoint = iteration_dir(save, FINAL_STEP)
    weights = load_file(checkpoint / "model" / "adapter_model.safetensors")
    return weights, json.loads((checkpoint / "trainer_state.json").read_text())["losses"]


def assert_identical(save, reference_save) -> None:
    weights, losses = final_state(save)
    expected_weights, expected_losses = final_state(reference_save)
    assert losses == expected_losses
    assert weights.keys() == expected_weights.keys()
    for name, tensor in weights.items():
        assert torch.equal(tensor, expected_weights[name]), name


def test_sigkill_then_resume_is_bit_identical(run_config, subprocess_tools, reference, tmp_path):
    config = run_config(tmp_path)
    code, output = run_until(subprocess_tools, config, f"step 7/{FINAL_STEP} ", signal.SIGKILL)
    assert code == -signal.SIGKILL, output
    killed_at = latest_iteration(tmp_path / "checkpoints")
    assert killed_at is not None and 4 <= killed_at < FINAL_STEP

    resumed = subprocess_tools["run"](config)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"holds a checkpoint at step {killed_at}; continuing from it" in resumed.stdout
    assert_identical(tmp_path / "checkpoints", reference)


def test_sigterm_saves_after_the_step_and_exits_for_requeue(run_config, subprocess_tools, reference, tmp_path):
    config = run_config(tmp_path, checkpointing={"save_interval": 1000})
    code, output = run_until(subprocess_tools, config, f"step 3/{FINAL_STEP} ", signal.SIGTERM)
    assert code == PREEMPTED_EXIT_CODE, output
    assert "preemption: SIGTERM received" in output
    stopped_at = latest_iteration(tmp_path / "checkpoints")
    assert stopped_at is not None and 3 <= stopped_at < FINAL_STEP
    assert f"checkpoint: step {stopped_at} saved" in output

    resumed = subprocess_tools["run"](config)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"checkpoint at step {stopped_at}; continuing" in resumed.stdout
    assert_identical(tmp_path / "checkpoints", reference)
