"""Start a benchmark subprocess with its output in a log file, and end it (its whole group) on timeout.

Output goes to a file, not a pipe: a grandchild that outlives its parent would hold a pipe open.
"""

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

KILL_GRACE_S = 20


@dataclass(frozen=True)
class Finished:
    returncode: int | None
    """None when the process was stopped at its timeout."""
    wall_s: float


def python_command(module: str, args: list[str], gpus: int) -> list[str]:
    """`python -m module args`; under torchrun (one process per GPU) when the run uses GPUs."""
    if gpus <= 0:
        return [sys.executable, "-m", module, *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={gpus}",
            "-m", module, *args]


def _stop_group(process: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=KILL_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            continue


def run_logged(command: list[str], log: Path, timeout_s: float, cwd: Path, env: dict[str, str] | None = None
               ) -> Finished:
    """Run to completion or timeout in `cwd`, appending stdout and stderr to `log`; `env` adds variables."""
    log.parent.mkdir(parents=True, exist_ok=True)
    cwd.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    start = time.monotonic()
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(f"$ {' '.join(command)}\n")
        handle.flush()
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                   start_new_session=True)
        try:
            returncode = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _stop_group(process)
            returncode = None
    return Finished(returncode, time.monotonic() - start)


def log_tail(log: Path, lines: int = 25) -> str:
    """The log's last lines, after the worker's own exception when the log has one: under torchrun the tail is
    the launcher's ChildFailedError report, which names no cause."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return ""
    causes = [line for line in text if _EXCEPTION_LINE.match(line) and "ChildFailedError" not in line]
    return "\n".join(([f"cause: {causes[-1]}"] if causes else []) + text[-lines:])


_EXCEPTION_LINE = re.compile(r"^(\[rank\d+\]: )?([A-Za-z_][\w.]*)?(Error|Exception|Interrupt)\b(: |$)")
"""`NotImplementedError: ...`, `[rank0]: torch.OutOfMemoryError: ...`: a traceback's last line."""
