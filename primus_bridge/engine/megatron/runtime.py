"""Process set-up before Megatron-Bridge runs: imports, our adaptations of it (compat/), the rendezvous."""

import contextlib
import os
import signal
import socket

from .compat import apply_adaptations
from .model import allow_our_targets


def prepare_megatron() -> None:
    """Import Megatron-Bridge (TE placeholders where TE is absent) and apply the registry's adaptations of it."""
    apply_adaptations()
    allow_our_targets()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_rendezvous() -> None:
    """`python -m primus_bridge.train` without torchrun: a one-process rendezvous on a free local port."""
    if "WORLD_SIZE" not in os.environ:
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
        os.environ.setdefault("RANK", "0")
        os.environ.setdefault("LOCAL_RANK", "0")
        os.environ.setdefault("WORLD_SIZE", "1")


@contextlib.contextmanager
def sigusr1_as_sigterm():
    """Megatron-Bridge's exit handler listens for one signal (SIGTERM); SLURM may send SIGUSR1 first."""
    def forward(signum, frame):
        os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.signal(signal.SIGUSR1, forward)
    try:
        yield
    finally:
        signal.signal(signal.SIGUSR1, previous)
