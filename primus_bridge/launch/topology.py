"""The node layout one launcher process works with, and strict reading of the variables it comes from."""

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..config import ConfigError

Env = Mapping[str, str]


@dataclass(frozen=True)
class Topology:
    """Where this node sits in the job: what torchrun's node-level flags are made of."""

    platform: str
    """slurm, pytorchjob, trainer or local: where the values were read from."""
    min_nodes: int
    max_nodes: int
    """Equal unless the job is elastic (Kubeflow `elasticPolicy`: nnodes given as MIN:MAX)."""
    node_rank: int
    master_addr: str
    master_port: int
    nproc_per_node: int
    run_id: str
    """Rendezvous id: the same on every node of one job, different between jobs."""
    sources: dict[str, str] = field(default_factory=dict)
    """Which variable (or rule) each value came from, for --dry-run."""

    @property
    def nnodes(self) -> str:
        """torchrun's --nnodes value: N, or MIN:MAX for an elastic job."""
        same = self.min_nodes == self.max_nodes
        return str(self.min_nodes) if same else f"{self.min_nodes}:{self.max_nodes}"

    @property
    def is_rendezvous_host(self) -> bool:
        """Node 0 serves the c10d store at master_addr:master_port; the others connect to it."""
        return self.node_rank == 0


def env_int(env: Env, name: str, minimum: int = 0) -> int:
    """The whole number in env[name]; a clear error naming the variable when it is missing or malformed."""
    raw = env.get(name)
    if raw is None:
        raise ConfigError(f"{name} is not set: the launcher needs it to place this node in the job")
    text = raw.strip()
    if not text.isdigit() or int(text) < minimum:
        raise ConfigError(f"{name}={raw!r}: expected a whole number >= {minimum}")
    return int(text)


def first_set(env: Env, *names: str) -> str | None:
    """The first of `names` that is set in env (its name), or None."""
    return next((name for name in names if env.get(name, "").strip()), None)


def parse_nnodes(raw: str, name: str) -> tuple[int, int]:
    """'4' -> (4, 4); '1:4' -> (1, 4) (Kubeflow's elastic form)."""
    low, sep, high = raw.strip().partition(":")
    high = high if sep else low
    if not (low.isdigit() and high.isdigit()) or not 1 <= int(low) <= int(high):
        raise ConfigError(f"{name}={raw!r}: expected a node count N or a range MIN:MAX with 1 <= MIN <= MAX")
    return int(low), int(high)


def check_port(port: int, name: str) -> int:
    if not 1 <= port <= 65535:
        raise ConfigError(f"{name}={port}: a TCP port is between 1 and 65535")
    return port
