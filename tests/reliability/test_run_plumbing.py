"""Run plumbing shared by the engines: atomic checkpoints, output guards, secrets, signals, RNG state."""

import json
import logging
import os
import random
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from primus_bridge.checkpoint import LATEST_FILE, latest_checkpoint, latest_iteration
from primus_bridge.checkpoint.store import out_of_space, remove_stale_temporaries, saved_steps, write_checkpoint
from primus_bridge.config import ConfigError
from primus_bridge.run.outputs import check_export_dir, plan_checkpoint_dir
from primus_bridge.run.rng import capture_rng, restore_rng, seed_everything
from primus_bridge.run.rng import RngState
from primus_bridge.run.secrets import RedactSecrets, hf_token, redact
from primus_bridge.run.signals import PreemptionWatch

pytestmark = pytest.mark.slow


def fill_with(text):
    def fill(folder):
        (folder / "weights.txt").write_text(text)
    return fill


def test_checkpoint_published_then_pointer_then_pruned(tmp_path):
    for step in (2, 4, 6):
        write_checkpoint(tmp_path, step, fill_with(f"w{step}"), keep_last=2)
    assert saved_steps(tmp_path) == [4, 6]
    assert latest_iteration(tmp_path) == 6
    assert (latest_checkpoint(tmp_path) / "weights.txt").read_text() == "w6"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_crash_during_save_leaves_previous_checkpoint_loadable(tmp_path):
    write_checkpoint(tmp_path, 2, fill_with("good"), keep_last=1)

    def crash(folder):
        (folder / "weights.txt").write_text("half")
        raise KeyboardInterrupt("killed mid-save")

    with pytest.raises(KeyboardInterrupt):
        write_checkpoint(tmp_path, 4, crash, keep_last=1)
    assert latest_iteration(tmp_path) == 2 and saved_steps(tmp_path) == [2]
    assert (latest_checkpoint(tmp_path) / "weights.txt").read_text() == "good"


@pytest.mark.skipif(not Path("/dev/full").is_char_device(), reason="needs the kernel's always-full /dev/full")
def test_a_full_filesystem_is_named_and_the_previous_checkpoint_stays(tmp_path):
    """/dev/full fails every write with ENOSPC: the real errors of torch.save and of a plain write."""
    write_checkpoint(tmp_path, 2, fill_with("good"))

    def fill(folder):
        (folder / "weights.txt").write_text("half")
        torch.save(torch.zeros(100_000), "/dev/full")  # torch's zip writer: "unexpected pos ..."

    with pytest.raises(ConfigError, match="checkpointing.save: the filesystem is full: writing the checkpoint of "
                                          "step 4 .*unexpected pos"):
        write_checkpoint(tmp_path, 4, fill)
    assert latest_iteration(tmp_path) == 2 and saved_steps(tmp_path) == [2]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    with pytest.raises(OSError) as plain:
        with open("/dev/full", "w") as handle:
            handle.write("x" * 65536)
    assert out_of_space(plain.value)
    assert not out_of_space(RuntimeError("CUDA error: an illegal memory access was encountered"))


def test_stale_temporaries_are_removed(tmp_path):
    (tmp_path / ".iter_0000004.abc123.tmp").mkdir()
    (tmp_path / f".{LATEST_FILE}.xyz.tmp").write_text("4")
    (tmp_path / "keep.txt").write_text("user file")
    assert sorted(remove_stale_temporaries(tmp_path)) == [".iter_0000004.abc123.tmp", f".{LATEST_FILE}.xyz.tmp"]
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_checkpoint_folder_plans(tmp_path):
    fresh = plan_checkpoint_dir(tmp_path / "new", resume=True, overwrite=False)
    assert fresh.resume_step is None and not fresh.clear_old
    ours = tmp_path / "ours"
    write_checkpoint(ours, 3, fill_with("w"))
    assert plan_checkpoint_dir(ours, resume=True, overwrite=False).resume_step == 3
    with pytest.raises(ConfigError, match="resume is off.*--overwrite"):
        plan_checkpoint_dir(ours, resume=False, overwrite=False)
    assert plan_checkpoint_dir(ours, resume=False, overwrite=True).clear_old
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not ours")
    with pytest.raises(ConfigError, match="checkpointing.save: .* is not empty"):
        plan_checkpoint_dir(foreign, resume=True, overwrite=False)
    assert plan_checkpoint_dir(foreign, resume=True, overwrite=True).resume_step is None


def test_export_folder_guard(tmp_path):
    check_export_dir(tmp_path / "absent", overwrite=False)
    (tmp_path / "empty").mkdir()
    check_export_dir(tmp_path / "empty", overwrite=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="hf_save_path: .* not empty.*--overwrite"):
        check_export_dir(tmp_path / "full", overwrite=False)
    check_export_dir(tmp_path / "full", overwrite=True)


def test_token_from_env_or_file_and_redacted(tmp_path, monkeypatch):
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    assert hf_token() is None
    secret_file = tmp_path / "token"
    secret_file.write_text("hf_fileSecret0123\n")
    monkeypatch.setenv("HF_TOKEN_FILE", str(secret_file))
    assert hf_token() == "hf_fileSecret0123"
    assert redact("Bearer hf_fileSecret0123!") == "Bearer ***!"
    monkeypatch.setenv("HF_TOKEN", "hf_envSecret4567")
    assert hf_token() == "hf_envSecret4567"
    assert "hf_" not in redact("a hf_envSecret4567 b hf_fileSecret0123")
    monkeypatch.setenv("HF_TOKEN_FILE", str(tmp_path / "missing"))
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(ConfigError, match="HF_TOKEN_FILE=.*cannot read"):
        hf_token()


def test_log_filter_scrubs_the_token(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_logSecret89ab")
    record = logging.LogRecord("primus_bridge", logging.INFO, __file__, 1, "token is %s", ("hf_logSecret89ab",), None)
    RedactSecrets().filter(record)
    assert record.getMessage() == "token is ***"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_preemption_signal_sets_the_flag_and_handlers_are_restored(sig):
    before = signal.getsignal(sig)
    with PreemptionWatch() as watch:
        assert not watch.should_stop()
        os.kill(os.getpid(), sig)
        assert watch.requested and watch.received == sig and watch.should_stop()
    assert signal.getsignal(sig) == before


def test_rng_state_round_trips_through_json():
    seed_everything(7)
    state = RngState.from_json(json.loads(json.dumps(capture_rng().to_json())))
    first = (random.random(), np.random.rand(), torch.rand(3))
    restore_rng(state)
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert first[:2] == again[:2] and torch.equal(first[2], again[2])


def test_run_report_writes_result_markdown_and_curve(tmp_path):
    from primus_bridge.run.result import TrainResult
    from primus_bridge.run.report import loss_drop, read_result, write_run_report

    result = TrainResult(engine="hf", steps_done=10, losses=[8.0 - 0.5 * i for i in range(10)],
                         tokens_per_second=35012.3, trainable_params=1000, total_params=5000,
                         checkpoint_dir=tmp_path / "ck", extra={"eval_losses": {"5": 6.0, "10": 4.5}})
    report = write_run_report(tmp_path, result, "Run", [("Notes", "all good")])
    text = report.read_text()
    assert "| tokens/s | 35,012 |" in text and "valid loss (step 10) | 4.5000" in text and "## Notes" in text
    assert (tmp_path / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    again = read_result(tmp_path)
    assert again.losses == result.losses and again.checkpoint_dir == str(tmp_path / "ck")
    start, end, drop = loss_drop(result.losses)
    assert (start, end) == (7.0, 4.5) and drop == pytest.approx(2.5 / 7)
