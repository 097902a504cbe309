"""One run at a time per checkpoint folder: an exclusive lock file, safe on shared filesystems.

`<save>/.primus_bridge.lock` is created with O_CREAT | O_EXCL (atomic on local filesystems and on NFS v3+,
Lustre, GPFS, unlike flock), and holds who took it: host, PID namespace, pid, the process's start time,
the SLURM job and attempt, and when. A second run on the same folder stops with an error naming the holder.
A lock is stale, and is broken, when its holder is provably gone:
- same host and PID namespace, and that pid is not running, or runs a process that started at another time;
- the same SLURM job at an earlier attempt (a requeued job may land on another node).
A lock from another host is never broken automatically: the error says how to remove it by hand.
The lock is removed on exit (only when it is still ours).
"""

import json
import logging
import os
import socket
from datetime import datetime, timezone
from pathlib import Path

from ..config import ConfigError

LOCK_FILE = ".primus_bridge.lock"

log = logging.getLogger("primus_bridge")


def _process_start(pid: int) -> str | None:
    """Start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat), None when not running."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[19] if len(fields) > 19 else None


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def this_process() -> dict:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid_namespace": _pid_namespace(), "pid": pid,
            "process_start": _process_start(pid), "slurm_job": os.environ.get("SLURM_JOB_ID"),
            "slurm_attempt": os.environ.get("SLURM_RESTART_COUNT", "0") if os.environ.get("SLURM_JOB_ID") else None,
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def describe(holder: dict) -> str:
    job = f", SLURM job {holder['slurm_job']}" if holder.get("slurm_job") else ""
    return f"pid {holder.get('pid')} on host {holder.get('host')}{job}, since {holder.get('started_at')}"


def stale_reason(holder: dict, me: dict) -> str | None:
    """Why the holder is provably gone, or None when it may still be running."""
    if holder.get("slurm_job") and holder.get("slurm_job") == me.get("slurm_job") \
            and holder.get("slurm_attempt") != me.get("slurm_attempt"):
        return f"an earlier attempt of SLURM job {holder['slurm_job']}"
    if holder.get("host") != me["host"] or holder.get("pid_namespace") != me["pid_namespace"]:
        return None
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid == me["pid"]:
        return "not a running process" if not isinstance(pid, int) else "this process's pid, from an earlier life"
    started = _process_start(pid)
    if started is None:
        return f"process {pid} is not running"
    if holder.get("process_start") is not None and started != holder["process_start"]:
        return f"pid {pid} now belongs to another process"
    return None


class CheckpointLock:
    """Context manager: hold `<folder>/.primus_bridge.lock` for the life of the run."""

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / LOCK_FILE
        self.content: str | None = None

    def __enter__(self) -> "CheckpointLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = this_process()
        for _ in range(3):
            if self._create(json.dumps(me, indent=1) + "\n"):
                return
            holder = self._holder()
            if holder == {}:  # released in the meantime: try again
                continue
            reason = stale_reason(holder, me) if holder is not None else None
            if reason is None:
                raise ConfigError(self._held_message(holder))
            log.warning("checkpoint lock %s: breaking a stale lock of %s (%s)", self.path, describe(holder), reason)
            self._break(holder)
        raise ConfigError(f"checkpointing.save: could not take the lock {self.path}: other runs keep taking it")

    def _create(self, content: str) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        self.content = content
        return True

    def _holder(self) -> dict | None:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _held_message(self, holder: dict | None) -> str:
        who = describe(holder) if holder else "a run whose lock file cannot be read"
        return (f"checkpointing.save: {self.path.parent} is in use by another run ({who}); two runs on one "
                f"checkpoint folder overwrite each other. Wait for it, use another --save, or, if that run is "
                f"gone (its node died), delete {self.path}")

    def _break(self, holder: dict) -> None:
        """Remove the stale lock, unless another run replaced it in the meantime."""
        aside = self.path.with_name(f"{LOCK_FILE}.stale-{os.getpid()}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        try:
            if json.loads(aside.read_text()) != holder:  # a fresh lock of another run: put it back
                os.link(aside, self.path)
        except (OSError, ValueError):
            pass
        aside.unlink(missing_ok=True)

    def release(self) -> None:
        if self.content is None:
            return
        try:
            if self.path.read_text() == self.content:
                self.path.unlink()
        except OSError:
            pass
        self.content = None
