"""Signal forwarding through a real torchrun: the trainer process gets the signal, the launcher reports 124."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from primus_bridge.launch.supervise import child_pids, exit_code
from primus_bridge.run.exit_codes import NONFINITE_EXIT_CODE, PREEMPTED_EXIT_CODE

pytestmark = pytest.mark.slow

# A stand-in for the trainer's preemption contract: note each signal, "save" for a second, exit 124.
WORKER = """
import os, signal, sys, time
from pathlib import Path
out = Path(os.environ["WORKER_OUT"])
got = []
def on_signal(signum, frame):
    got.append(signal.Signals(signum).name)
    (out / "signals.txt").write_text(" ".join(got))
for sig in (signal.SIGTERM, signal.SIGUSR1):
    signal.signal(sig, on_signal)
(out / "ready").write_text(os.environ["RANK"])
deadline = time.time() + 60
while not got and time.time() < deadline:
    time.sleep(0.05)
time.sleep(1.0)
(out / "saved").write_text("yes")
if os.environ.get("WORKER_DIVERGES"):  # the step after the signal went NaN: a permanent failure, not a preemption
    from primus_bridge.run.exit_codes import NONFINITE_EXIT_CODE, record_exit
    record_exit(NONFINITE_EXIT_CODE, "training diverged at step 7")
    sys.exit(NONFINITE_EXIT_CODE)
sys.exit(124 if got else 0)
"""

# Runs the launcher's Supervisor over torchrun_argv, with the stand-in module as the trainer.
DRIVER = """
import os, sys
from primus_bridge.launch.command import torchrun_argv
from primus_bridge.launch.platforms import read_topology
from primus_bridge.launch.supervise import Supervisor
from primus_bridge.logs import setup_logging
setup_logging()
topology = read_topology("local", os.environ, 1, lambda: 0)
argv = torchrun_argv(topology, "preemptible_worker", [], grace_seconds=30)
sys.exit(Supervisor(argv, dict(os.environ)).run())
"""


def test_exit_codes():
    assert exit_code(0, None) == 0
    assert exit_code(3, None) == 3
    assert exit_code(-9, None) == 137
    assert exit_code(1, signal.SIGUSR1) == PREEMPTED_EXIT_CODE
    assert exit_code(0, signal.SIGTERM) == 0
    assert exit_code(1, None, (2, "config")) == 2
    assert exit_code(1, signal.SIGUSR1, (NONFINITE_EXIT_CODE, "diverged")) == NONFINITE_EXIT_CODE


def test_child_pids_finds_real_children():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in child_pids(os.getpid())
        assert child_pids(child.pid) == []
    finally:
        child.kill()
        child.wait()


def start_launcher(tmp_path: Path, port: int, **worker_env: str) -> subprocess.Popen:
    (tmp_path / "preemptible_worker.py").write_text(textwrap.dedent(WORKER))
    env = dict(os.environ, WORKER_OUT=str(tmp_path), MASTER_PORT=str(port), **worker_env,
               PYTHONPATH=os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    return subprocess.Popen([sys.executable, "-c", DRIVER], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(path: Path, launcher: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while not path.exists():
        if launcher.poll() is not None:
            raise AssertionError(f"launcher exited {launcher.returncode} early:\n{launcher.stdout.read()}")
        if time.time() > deadline:
            launcher.kill()
            raise AssertionError(f"{path.name} did not appear:\n{launcher.communicate()[0]}")
        time.sleep(0.1)


@pytest.mark.parametrize("deliver", ["launcher only (Kubernetes, docker)", "every process (SLURM)"])
def test_preemption_reaches_the_trainer(tmp_path, free_port, deliver):
    launcher = start_launcher(tmp_path, free_port)
    wait_for(tmp_path / "ready", launcher)
    if deliver.startswith("launcher"):
        os.kill(launcher.pid, signal.SIGTERM)
        sent = "SIGTERM"
    else:
        os.killpg(launcher.pid, signal.SIGUSR1)
        sent = "SIGUSR1"
    output, _ = launcher.communicate(timeout=120)
    assert launcher.returncode == PREEMPTED_EXIT_CODE, output
    assert (tmp_path / "saved").read_text() == "yes", "torchrun killed the trainer before it saved"
    assert (tmp_path / "signals.txt").read_text().split()[0] == sent
    assert f"launcher: {sent} received" in output


def test_a_trainer_that_diverged_is_not_reported_as_preempted(tmp_path, free_port):
    """torchrun exits 1 for any failed worker; the code the trainer recorded wins, even after a signal."""
    launcher = start_launcher(tmp_path, free_port, WORKER_DIVERGES="1")
    wait_for(tmp_path / "ready", launcher)
    os.kill(launcher.pid, signal.SIGTERM)
    output, _ = launcher.communicate(timeout=120)
    assert launcher.returncode == NONFINITE_EXIT_CODE, output
    assert f"the trainer stopped with exit code {NONFINITE_EXIT_CODE}" in output
