"""`primus-bridge doctor`: is this node (or container) ready to train?

GPUs, torch and its ROCm/CUDA, the GPU libraries against the image pins (docker/versions.env), the
Megatron adaptations (each compat registry entry against the installed Megatron), the RCCL/NCCL
environment, /dev/shm, checkpoint disk, and the data / model paths of the user's config.
Each check passes, warns or fails with a fix; the image's default command runs it.
"""

from .cli import main

__all__ = ["main"]
