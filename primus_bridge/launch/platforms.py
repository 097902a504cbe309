"""Read the node layout from the scheduler's environment: SLURM, Kubeflow PyTorchJob, Kubeflow Trainer v2, local.

SLURM: one launcher per node (`srun --ntasks-per-node=1`); the first host of SLURM_JOB_NODELIST (expanded
by `scontrol show hostnames`) serves the rendezvous. MASTER_ADDR / MASTER_PORT, when set, win (the
templates set them on the host, where scontrol exists, before entering a container).
PyTorchJob (kubeflow.org/v1): the operator sets MASTER_ADDR, MASTER_PORT, WORLD_SIZE (= pods x processes),
RANK (= pod index), PET_NNODES, PET_NODE_RANK, PET_NPROC_PER_NODE, and PET_RDZV_* for elastic jobs.
Trainer v2 (TrainJob on JobSet): PET_NNODES, PET_NODE_RANK, PET_NPROC_PER_NODE, PET_MASTER_ADDR/PORT.
"""

import shutil
import subprocess
from collections.abc import Callable

from ..config import ConfigError
from .topology import Env, Topology, check_port, env_int, first_set, parse_nnodes

PLATFORMS = ("slurm", "pytorchjob", "trainer", "local")
LOCAL_PORT = 29500
TRAINER_PORT = 29400
SLURM_PORT_BASE, SLURM_PORT_SPAN = 20000, 20000
"""Without MASTER_PORT, a SLURM job uses 20000 + job id mod 20000, so jobs sharing a node do not collide."""


def detect_platform(env: Env) -> str:
    """The first platform whose variables are present."""
    if env.get("SLURM_JOB_ID") and env.get("SLURM_PROCID"):
        return "slurm"
    if env.get("MASTER_ADDR") and first_set(env, "PET_NODE_RANK", "RANK"):
        return "pytorchjob"
    if env.get("PET_MASTER_ADDR") and env.get("PET_NNODES"):
        return "trainer"
    return "local"


def read_topology(platform: str, env: Env, nproc: int | None, gpus: Callable[[], int]) -> Topology:
    """The Topology for `platform` ('auto' detects it); nproc overrides the processes per node."""
    name = detect_platform(env) if platform == "auto" else platform
    readers = {"slurm": _slurm, "pytorchjob": _pytorchjob, "trainer": _trainer, "local": _local}
    if name not in readers:
        raise ConfigError(f"--platform {name!r}: expected auto or one of {', '.join(PLATFORMS)}")
    return readers[name](env, _NprocRule(nproc, gpus))


class _NprocRule:
    """Processes per node: --nproc-per-node, else the scheduler's value, else visible GPUs, else 1."""

    def __init__(self, override: int | None, gpus: Callable[[], int]):
        self.override, self.gpus = override, gpus

    def resolve(self, env: Env, name: str | None) -> tuple[int, str]:
        if self.override is not None:
            return self.override, "--nproc-per-node"
        raw = env.get(name, "").strip() if name else ""
        if raw.isdigit() and int(raw) > 0:
            return int(raw), name
        if raw and raw not in ("auto", "gpu", "0"):
            raise ConfigError(f"{name}={raw!r}: expected a process count, 'auto' or 'gpu'")
        count = self.gpus()
        return (count, "visible GPUs") if count else (1, "no GPU visible: 1 process")


def _slurm(env: Env, nproc: _NprocRule) -> Topology:
    nodes_var = first_set(env, "SLURM_NNODES", "SLURM_JOB_NUM_NODES") or "SLURM_NNODES"
    nnodes = env_int(env, nodes_var, minimum=1)
    tasks_var = first_set(env, "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS") or "SLURM_NTASKS"
    if "SLURM_STEP_ID" not in env and nnodes > 1:
        raise ConfigError(f"this is the batch script of a {nnodes}-node job: start the launcher on every node "
                          "with `srun --ntasks-per-node=1 primus-bridge launch ...`")
    if tasks_var in env and env_int(env, tasks_var) != nnodes:
        raise ConfigError(f"{tasks_var}={env[tasks_var]} on {nnodes} node(s): the launcher runs once per node "
                          "(it starts one process per GPU itself); use srun --ntasks-per-node=1")
    job_id = env_int(env, "SLURM_JOB_ID")
    addr, addr_from = _slurm_master(env)
    port, port_from = _port(env, "MASTER_PORT", SLURM_PORT_BASE + job_id % SLURM_PORT_SPAN,
                            f"20000 + SLURM_JOB_ID mod {SLURM_PORT_SPAN}")
    count, count_from = nproc.resolve(env, "SLURM_GPUS_ON_NODE")
    return Topology("slurm", nnodes, nnodes, env_int(env, "SLURM_PROCID"), addr, port, count, str(job_id),
                    {"nnodes": nodes_var, "node_rank": "SLURM_PROCID", "master_addr": addr_from,
                     "master_port": port_from, "nproc_per_node": count_from, "run_id": "SLURM_JOB_ID"})


def _slurm_master(env: Env) -> tuple[str, str]:
    if env.get("MASTER_ADDR", "").strip():
        return env["MASTER_ADDR"].strip(), "MASTER_ADDR"
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not nodelist:
        raise ConfigError("SLURM_JOB_NODELIST is not set: cannot tell the first node of the job "
                          "(set MASTER_ADDR to the host that should serve the rendezvous)")
    return slurm_hostnames(nodelist)[0], "first host of SLURM_JOB_NODELIST"


def slurm_hostnames(nodelist: str) -> list[str]:
    """`scontrol show hostnames NODELIST`: SLURM's own expansion of 'gpu-[01-04,07]'."""
    scontrol = shutil.which("scontrol")
    if scontrol is None:
        raise ConfigError(f"scontrol is not on PATH, so SLURM_JOB_NODELIST={nodelist!r} cannot be expanded: "
                          "set MASTER_ADDR (the templates in slurm/ do this on the host)")
    done = subprocess.run([scontrol, "show", "hostnames", nodelist], capture_output=True, text=True, timeout=60)
    hosts = done.stdout.split()
    if done.returncode != 0 or not hosts:
        raise ConfigError(f"`scontrol show hostnames {nodelist}` failed: {done.stderr.strip() or 'no hosts'}")
    return hosts


def _pytorchjob(env: Env, nproc: _NprocRule) -> Topology:
    count, count_from = nproc.resolve(env, "PET_NPROC_PER_NODE")
    nodes_from = "PET_NNODES" if env.get("PET_NNODES") else "WORLD_SIZE / processes per node"
    low, high = _pytorchjob_nodes(env, count)
    rank_var = first_set(env, "PET_NODE_RANK", "RANK") or "RANK"
    addr, port = env["MASTER_ADDR"].strip(), check_port(env_int(env, "MASTER_PORT", 1), "MASTER_PORT")
    addr_from, port_from = "MASTER_ADDR", "MASTER_PORT"
    if env.get("PET_RDZV_ENDPOINT"):
        addr, port = _endpoint(env["PET_RDZV_ENDPOINT"], "PET_RDZV_ENDPOINT")
        addr_from = port_from = "PET_RDZV_ENDPOINT"
    run_id = env.get("PET_RDZV_ID") or addr
    return Topology("pytorchjob", low, high, env_int(env, rank_var), addr, port, count, run_id,
                    {"nnodes": nodes_from, "node_rank": rank_var, "master_addr": addr_from,
                     "master_port": port_from, "nproc_per_node": count_from,
                     "run_id": "PET_RDZV_ID" if env.get("PET_RDZV_ID") else "MASTER_ADDR"})


def _pytorchjob_nodes(env: Env, nproc: int) -> tuple[int, int]:
    if env.get("PET_NNODES"):
        return parse_nnodes(env["PET_NNODES"], "PET_NNODES")
    world = env_int(env, "WORLD_SIZE", minimum=1)
    if world % nproc:
        raise ConfigError(f"WORLD_SIZE={world} is not a multiple of {nproc} processes per node; "
                          "set PET_NNODES or PET_NPROC_PER_NODE (PyTorchJob spec.nprocPerNode)")
    return world // nproc, world // nproc


def _trainer(env: Env, nproc: _NprocRule) -> Topology:
    low, high = parse_nnodes(env["PET_NNODES"], "PET_NNODES")
    count, count_from = nproc.resolve(env, "PET_NPROC_PER_NODE")
    port, port_from = _port(env, "PET_MASTER_PORT", TRAINER_PORT, f"Trainer default {TRAINER_PORT}")
    addr = env["PET_MASTER_ADDR"].strip()
    return Topology("trainer", low, high, env_int(env, "PET_NODE_RANK"), addr, port, count, addr,
                    {"nnodes": "PET_NNODES", "node_rank": "PET_NODE_RANK", "master_addr": "PET_MASTER_ADDR",
                     "master_port": port_from, "nproc_per_node": count_from, "run_id": "PET_MASTER_ADDR"})


def _local(env: Env, nproc: _NprocRule) -> Topology:
    count, count_from = nproc.resolve(env, None)
    port, port_from = _port(env, "MASTER_PORT", LOCAL_PORT, f"default {LOCAL_PORT}")
    return Topology("local", 1, 1, 0, "127.0.0.1", port, count, "local",
                    {"nnodes": "one machine", "node_rank": "one machine", "master_addr": "this machine",
                     "master_port": port_from, "nproc_per_node": count_from, "run_id": "local run"})


def _port(env: Env, name: str, default: int, rule: str) -> tuple[int, str]:
    if env.get(name, "").strip():
        return check_port(env_int(env, name, 1), name), name
    return default, rule


def _endpoint(raw: str, name: str) -> tuple[str, int]:
    host, sep, port = raw.strip().rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"{name}={raw!r}: expected HOST:PORT")
    return host, check_port(int(port), name)
