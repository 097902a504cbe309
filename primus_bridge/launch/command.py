"""The torchrun command line and environment for one node."""

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from ..config import ConfigError
from .comm_env import EnvSetting
from .topology import Env, Topology

TRAINERS = {"train": "primus_bridge.train"}
"""Verbs the launcher can start under torchrun -> the module torchrun runs with -m."""

TORCHRUN_SIGNALS = "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1"
"""torchrun passes these on to its workers instead of dying (SLURM signals every process of a step)."""


@dataclass(frozen=True)
class LaunchPlan:
    """Everything the launcher will run on this node; --dry-run prints it."""

    topology: Topology
    settings: list[EnvSetting]
    argv: list[str]
    dropped: list[str]
    """PET_* variables taken out of torchrun's environment: torchrun would read them as flag defaults."""

    def child_env(self, env: Env) -> dict[str, str]:
        merged = {k: v for k, v in env.items() if k not in self.dropped}
        merged.update({s.name: s.value for s in self.settings})
        return merged


def trainer_module(verb_and_args: list[str]) -> tuple[str, list[str]]:
    """['train', '--config', ...] -> ('primus_bridge.train', ['--config', ...])."""
    args = verb_and_args[1:] if verb_and_args[:1] == ["--"] else verb_and_args
    if not args or args[0] not in TRAINERS:
        given = repr(args[0]) if args else "nothing"
        raise ConfigError(f"after the launcher's flags give the verb to run, e.g. `primus-bridge launch -- train "
                          f"--config C.yaml`; got {given} (verbs: {', '.join(TRAINERS)})")
    return TRAINERS[args[0]], args[1:]


def torchrun_executable() -> list[str]:
    """torchrun beside this Python (the same environment), else on PATH, else `python -m torch.distributed.run`."""
    beside = Path(sys.executable).with_name("torchrun")
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("torchrun")
    return [found] if found else [sys.executable, "-m", "torch.distributed.run"]


def torchrun_argv(topology: Topology, module: str, args: list[str], grace_seconds: int) -> list[str]:
    """c10d rendezvous at master_addr:master_port; node 0 hosts the store; no in-place restarts."""
    host = f"[{topology.master_addr}]" if ":" in topology.master_addr else topology.master_addr
    return [
        *torchrun_executable(),
        f"--nnodes={topology.nnodes}",
        f"--nproc-per-node={topology.nproc_per_node}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={host}:{topology.master_port}",
        f"--rdzv-id={topology.run_id}",
        f"--rdzv-conf=is_host={str(topology.is_rendezvous_host).lower()}",
        "--max-restarts=0",
        f"--signals-to-handle={TORCHRUN_SIGNALS}",
        f"--shutdown-timeout={grace_seconds}",
        "-m", module, *args,
    ]
