"""PRIMUS_BRIDGE_EXIT_CODES: a checkpointed stop exits 252 for a PyTorchJob (ExitCode), 124 otherwise."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from primus_bridge.config import CONFIG_EXIT_CODE, ConfigError
from primus_bridge.launch.cli import main
from primus_bridge.launch.scheduler_codes import (
    EXIT_CODES_ENV,
    PYTORCHJOB_PREEMPTED_EXIT_CODE,
    exit_code_style,
    reported_exit_code,
)
from primus_bridge.run.exit_codes import NONFINITE_EXIT_CODE, PREEMPTED_EXIT_CODE

pytestmark = pytest.mark.slow

# A trainer that exits 124 once it got SIGTERM, like primus_bridge.train after its checkpoint.
WORKER = """
import os, signal, sys, time
from pathlib import Path
got = []
signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
Path(os.environ["WORKER_OUT"], "ready").write_text("yes")
deadline = time.time() + 60
while not got and time.time() < deadline:
    time.sleep(0.05)
sys.exit(124 if got else 0)
"""

# The launcher's run under torchrun, reported the way primus_bridge.launch.cli.main reports it.
DRIVER = """
import os, sys
from primus_bridge.launch.command import torchrun_argv
from primus_bridge.launch.platforms import read_topology
from primus_bridge.launch.scheduler_codes import exit_code_style, reported_exit_code
from primus_bridge.launch.supervise import Supervisor
from primus_bridge.logs import setup_logging

setup_logging()
style = exit_code_style(os.environ)
argv = torchrun_argv(read_topology("local", os.environ, 1, lambda: 0), "sigterm_worker", [], grace_seconds=30)
sys.exit(reported_exit_code(Supervisor(argv, dict(os.environ)).run(), style))
"""


def test_styles():
    assert exit_code_style({}) == exit_code_style({EXIT_CODES_ENV: " "}) == "shell"
    assert exit_code_style({EXIT_CODES_ENV: "pytorchjob"}) == "pytorchjob"
    with pytest.raises(ConfigError, match=f"{EXIT_CODES_ENV}='kubeflow': expected one of shell, pytorchjob"):
        exit_code_style({EXIT_CODES_ENV: "kubeflow"})


def test_only_the_checkpointed_stop_is_remapped():
    assert PYTORCHJOB_PREEMPTED_EXIT_CODE == 252
    assert reported_exit_code(PREEMPTED_EXIT_CODE, "pytorchjob") == 252
    assert reported_exit_code(PREEMPTED_EXIT_CODE, "shell") == PREEMPTED_EXIT_CODE
    for code in (0, 1, CONFIG_EXIT_CODE, NONFINITE_EXIT_CODE, 137, 143):
        assert reported_exit_code(code, "pytorchjob") == code


def test_a_misspelt_style_stops_the_launcher(monkeypatch, capsys):
    monkeypatch.setenv(EXIT_CODES_ENV, "ExitCode")
    assert main(["--dry-run", "--platform", "local", "--", "train", "--config", "c.yaml"]) == CONFIG_EXIT_CODE
    assert f"{EXIT_CODES_ENV}='ExitCode'" in capsys.readouterr().err


def test_sigterm_to_the_launcher_exits_252(tmp_path, free_port):
    """Kubernetes sends SIGTERM to the container's first process, the launcher; the trainer checkpoints.
    (Without the variable the same run exits 124: tests/launch/test_supervise.py.)"""
    (tmp_path / "sigterm_worker.py").write_text(textwrap.dedent(WORKER))
    env = dict(os.environ, WORKER_OUT=str(tmp_path), MASTER_PORT=str(free_port), **{EXIT_CODES_ENV: "pytorchjob"},
               PYTHONPATH=os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    launcher = subprocess.Popen([sys.executable, "-c", DRIVER], env=env, start_new_session=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_ready(tmp_path / "ready", launcher)
        os.kill(launcher.pid, signal.SIGTERM)
        output, _ = launcher.communicate(timeout=120)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
    assert launcher.returncode == PYTORCHJOB_PREEMPTED_EXIT_CODE, output
    assert "reporting 252 for the checkpointed stop" in output


def wait_until_ready(path, launcher: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while not path.exists():
        if launcher.poll() is not None or time.time() > deadline:
            raise AssertionError(f"the worker did not start:\n{launcher.communicate(timeout=30)[0]}")
        time.sleep(0.1)
