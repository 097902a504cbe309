"""`primus-bridge launch [--] train ...`: one entrypoint for every scheduler template.

Works out the node layout from SLURM, Kubeflow PyTorchJob, Kubeflow Trainer v2 (JobSet) or the local
machine, applies the RCCL/NCCL defaults, then runs torchrun with c10d rendezvous and forwards the
preemption signals (SIGTERM, SIGUSR1) to the trainer processes.
"""

from .cli import main

__all__ = ["main"]
