"""A one-process gloo group for work done before (or outside) the training job: HF import, export.

Megatron-Core's checkpoint code needs torch.distributed and its parallel state even on one CPU process.
The group uses an in-process store: under `torchrun`, any TCP rendezvous (even on a fresh port) is
routed to the launcher's agent store as a client and waits forever for a server.
"""

import contextlib

import torch.distributed as dist


@contextlib.contextmanager
def single_process_group():
    """torch.distributed (gloo, world size 1) plus Megatron's parallel state, torn down on exit."""
    from megatron.core import parallel_state

    if dist.is_initialized():
        raise RuntimeError("single_process_group: torch.distributed is already initialized in this process")
    dist.init_process_group("gloo", store=dist.HashStore(), world_size=1, rank=0)
    try:
        parallel_state.initialize_model_parallel()
        yield
    finally:
        parallel_state.destroy_model_parallel()
        dist.destroy_process_group()
