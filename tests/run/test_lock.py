"""The checkpoint-folder lock: one run per folder; stale locks of gone processes are broken; released on exit."""

import json
import subprocess
import sys
import time

import pytest

from primus_bridge.config import ConfigError
from primus_bridge.run.lock import LOCK_FILE, CheckpointLock, this_process
from primus_bridge.run.outputs import plan_checkpoint_dir

HOLD = """
import sys, time
from primus_bridge.run.lock import CheckpointLock
lock = CheckpointLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path):
    """Another process holding the lock on tmp_path/ck (killed at the end)."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "ck")], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    yield process
    process.kill()
    process.wait()


def test_a_second_run_is_refused_with_the_holder_named(tmp_path, holder):
    with pytest.raises(ConfigError, match=rf"in use by another run \(pid {holder.pid} on host .*delete .*{LOCK_FILE}"):
        CheckpointLock(tmp_path / "ck").acquire()
    assert json.loads((tmp_path / "ck" / LOCK_FILE).read_text())["pid"] == holder.pid


def test_the_lock_of_a_dead_process_is_broken(tmp_path, holder, caplog):
    holder.kill()
    holder.wait()
    with CheckpointLock(tmp_path / "ck") as lock:
        assert json.loads(lock.path.read_text())["pid"] == this_process()["pid"]
    assert f"breaking a stale lock of pid {holder.pid}" in caplog.text and f"process {holder.pid} is not running" \
        in caplog.text
    assert not (tmp_path / "ck" / LOCK_FILE).exists(), "released on exit"


def test_a_reused_pid_does_not_keep_the_lock(tmp_path):
    """The recorded pid runs again, but as another process (its start time differs): the lock is stale."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = {**this_process(), "pid": sleeper.pid, "process_start": "1"}
        (tmp_path / LOCK_FILE).write_text(json.dumps(stale))
        with CheckpointLock(tmp_path):
            pass
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_lock_from_another_host_is_kept_unless_it_is_an_earlier_attempt_of_this_slurm_job(tmp_path, monkeypatch):
    other = {**this_process(), "host": "node-17", "pid": 4242, "slurm_job": "77", "slurm_attempt": "0"}
    (tmp_path / LOCK_FILE).write_text(json.dumps(other))
    with pytest.raises(ConfigError, match="pid 4242 on host node-17, SLURM job 77"):
        CheckpointLock(tmp_path).acquire()
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # the requeued job, possibly on another node
    with CheckpointLock(tmp_path):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["slurm_attempt"] == "1"


def test_a_lock_file_alone_does_not_make_the_folder_foreign(tmp_path):
    with CheckpointLock(tmp_path / "ck"):
        plan = plan_checkpoint_dir(tmp_path / "ck", resume=True, overwrite=False)
    assert plan.resume_step is None and not plan.clear_old


def test_release_leaves_another_runs_lock_alone(tmp_path):
    lock = CheckpointLock(tmp_path)
    lock.acquire()
    lock.path.write_text(json.dumps({"host": "elsewhere", "pid": 1, "started_at": time.time()}))
    lock.release()
    assert lock.path.exists()
