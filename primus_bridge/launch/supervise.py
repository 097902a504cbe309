"""Run torchrun as a child and pass the preemption signals (SIGTERM, SIGUSR1) to the trainer processes.

The signal goes straight to torchrun's children, not to torchrun: under SLURM every process of a job step
already receives it, and a second copy delivered to torchrun interrupts torchrun's own graceful shutdown;
under Kubernetes and `docker run` only PID 1 (this launcher) receives it. The trainer treats repeated
signals as one request (primus_bridge.run.signals), so a copy from both sides is harmless.
torchrun itself still handles SIGUSR1 (see command.TORCHRUN_SIGNALS), so a signal sent to it does not kill it.
After a preemption signal any non-zero torchrun exit is reported as PREEMPTED_EXIT_CODE: the scheduler
requeues (SLURM) or restarts (Kubernetes OnFailure) and the trainer resumes from its newest checkpoint.
torchrun exits 1 whenever a worker fails, so a trainer that stops with a code of its own (a diverged run, a
config problem: run/exit_codes.py) leaves it in the file named by PRIMUS_BRIDGE_EXIT_FILE, and the launcher
reports that code, which wins over the preemption code: such a run must not be requeued.
"""

import logging
import os
import signal
import subprocess
import tempfile
from pathlib import Path
from types import FrameType

from ..run.exit_codes import EXIT_FILE_ENV, PREEMPTED_EXIT_CODE, recorded_exit

PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

log = logging.getLogger("primus_bridge")


def child_pids(parent: int, proc: Path = Path("/proc")) -> list[int]:
    """Processes whose parent is `parent` (field 4 of /proc/PID/stat, after the parenthesised name)."""
    found = []
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 1 and fields[1] == str(parent):
            found.append(int(stat.parent.name))
    return sorted(found)


def exit_code(returncode: int, preempted_by: signal.Signals | None,
              recorded: tuple[int, str] | None = None) -> int:
    """Shell-style code for torchrun's result: the code a failed trainer recorded, else PREEMPTED_EXIT_CODE
    when it failed after a preemption signal, else torchrun's own."""
    code = 128 - returncode if returncode < 0 else returncode
    if recorded is not None and code != 0:
        log.info("launcher: torchrun exited %d; the trainer stopped with exit code %d; reporting %d",
                 code, recorded[0], recorded[0])
        return recorded[0]
    if preempted_by is not None and code != 0:
        log.info("launcher: torchrun exited %d after %s; reporting %d (preempted: requeue and resume)",
                 code, preempted_by.name, PREEMPTED_EXIT_CODE)
        return PREEMPTED_EXIT_CODE
    return code


class Supervisor:
    """Start `argv` with `env`, forward preemption signals to its workers, return the exit code."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        self.argv, self.env = argv, env
        self.child: subprocess.Popen | None = None
        self.preempted_by: signal.Signals | None = None

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_preemption) for sig in PREEMPTION_SIGNALS}
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._on_interrupt)
        with tempfile.TemporaryDirectory(prefix="primus-bridge-launch-") as scratch:
            exit_file = Path(scratch) / "trainer-exit.json"
            try:
                self.child = subprocess.Popen(self.argv, env={**self.env, EXIT_FILE_ENV: str(exit_file)})
                if self.preempted_by is not None:
                    self._forward(self.preempted_by)
                returncode = self.child.wait()
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
            return exit_code(returncode, self.preempted_by, recorded_exit(exit_file))

    def _on_preemption(self, signum: int, frame: FrameType | None) -> None:
        sig = signal.Signals(signum)
        if self.preempted_by is None:
            self.preempted_by = sig
            log.info("launcher: %s received; asking the trainer to checkpoint and exit", sig.name)
        if self.child is not None:
            self._forward(sig)

    def _on_interrupt(self, signum: int, frame: FrameType | None) -> None:
        """Ctrl-C reaches torchrun and the trainer through the terminal; wait for them to finish."""

    def _forward(self, sig: signal.Signals) -> None:
        workers = child_pids(self.child.pid)
        for pid in workers or [self.child.pid]:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                continue
