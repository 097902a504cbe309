"""Preemption: SIGTERM / SIGUSR1 / SIGINT ask the trainer to finish the current step, save, and exit.

The handler only sets a flag; the trainer polls it between steps. Under torch.distributed every rank
must stop at the same step, so `PreemptionWatch.should_stop()` agrees across ranks with an all-reduce.
Ctrl-C (SIGINT) is a stop request like the scheduler's; a second Ctrl-C gives up on the checkpoint and
interrupts at once (KeyboardInterrupt). The exit code after a clean stop is PREEMPTED_EXIT_CODE (exit_codes.py).
"""

import contextlib
import logging
import os
import signal
import threading
from types import FrameType

PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)

log = logging.getLogger("primus_bridge")


class PreemptionWatch:
    """Context manager that catches the preemption signals for its lifetime, then restores the old handlers."""

    def __init__(self, signals: tuple[signal.Signals, ...] = PREEMPTION_SIGNALS):
        self.signals = signals
        self.received: signal.Signals | None = None
        self._previous: dict[signal.Signals, object] = {}

    def __enter__(self) -> "PreemptionWatch":
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("PreemptionWatch must be entered on the main thread (Python delivers signals there)")
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signal.Signals(signum)
            if signum == signal.SIGINT:
                log.warning("interrupted: saving a checkpoint after this step (Ctrl-C again to stop without it)")
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt

    @property
    def requested(self) -> bool:
        """Whether this process received a preemption signal."""
        return self.received is not None

    def should_stop(self) -> bool:
        """True on every rank when any rank received a signal (collective: call it on all ranks, same step)."""
        local = self.requested
        stop = any_rank_true(local)
        if stop:
            name = self.received.name if self.received else "a signal on another rank"
            log.info("preemption: %s received; saving a checkpoint after this step, then exiting", name)
        return stop


def any_rank_true(flag: bool) -> bool:
    """Logical OR of `flag` over all ranks of the default process group (just `flag` without one)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    value = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


@contextlib.contextmanager
def forwarded_to_sigterm(*signals: signal.Signals):
    """Turn `signals` into SIGTERM for this process, for trainers whose handler listens to SIGTERM only."""
    def forward(signum, frame):
        os.kill(os.getpid(), signal.SIGTERM)

    previous = {sig: signal.signal(sig, forward) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
