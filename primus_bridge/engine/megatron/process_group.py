"""A one-process gloo group for work done before (or outside) the training job: HF import, export.

Megatron-Core's checkpoint code needs torch.distributed and its parallel state even on one CPU process.
The group listens on a free local port, so it never touches the rendezvous of a surrounding
`torchrun` (whose MASTER_PORT belongs to the launcher).
"""

import contextlib
import socket

import torch.distributed as dist


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def single_process_group():
    """torch.distributed (gloo, world size 1) plus Megatron's parallel state, torn down on exit."""
    from megatron.core import parallel_state

    if dist.is_initialized():
        raise RuntimeError("single_process_group: torch.distributed is already initialized in this process")
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", world_size=1, rank=0)
    try:
        parallel_state.initialize_model_parallel()
        yield
    finally:
        parallel_state.destroy_model_parallel()
        dist.destroy_process_group()
