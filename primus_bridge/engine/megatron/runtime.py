"""Process set-up before Megatron-Bridge runs: imports, our adaptations of it, the rendezvous."""

import contextlib
import os
import signal
import socket

from .foreach_kernels import use_foreach_kernels
from .lora_fast_path import use_lora_fast_path
from .model import allow_our_targets
from .optimizer_resume import resume_before_first_step
from .packed_rope import use_packed_rope
from .prebuilt_helpers import use_prebuilt_dataset_helpers
from .te_compat import import_megatron_bridge


def prepare_megatron() -> None:
    """Import Megatron-Bridge (TE placeholders where TE is absent) and apply our adaptations of it."""
    import_megatron_bridge()
    use_prebuilt_dataset_helpers()
    use_packed_rope()
    use_foreach_kernels()
    use_lora_fast_path()
    resume_before_first_step()
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
