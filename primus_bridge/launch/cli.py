"""`primus-bridge launch [flags] [--] train ...` / `python -m primus_bridge.launch`."""

import argparse
import os
import shlex
import sys
from pathlib import Path

from ..cli.errors import run_verb
from ..cli.parser import ArgumentParser
from ..hardware import visible_gpu_count
from ..logs import setup_logging
from .comm_env import VENDORS, comm_settings, gpu_vendor
from .command import LaunchPlan, torchrun_argv, trainer_module
from .platforms import PLATFORMS, read_topology
from .scheduler_codes import exit_code_style, reported_exit_code
from .supervise import Supervisor
from .topology import Env

SHM_MINIMUM = 1 << 30
"""Below 1 GiB of /dev/shm, RCCL/NCCL and data-loader workers fail with bus errors."""


def build_parser() -> argparse.ArgumentParser:
    from . import comm_env

    parser = ArgumentParser(
        prog="primus-bridge launch",
        description="Start torchrun (c10d rendezvous) on this node of a SLURM, Kubeflow or local job and run "
                    "the trainer under it. Example: srun --ntasks-per-node=1 primus-bridge launch -- train "
                    "--config C.yaml",
        epilog="Environment defaults (never overriding yours):\n" + comm_env.__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dry-run", action="store_true",
                        help="print the torchrun command and environment; run nothing")
    parser.add_argument("--platform", default="auto", choices=("auto", *PLATFORMS),
                        help="where to read the node layout from (default: detected from the environment)")
    parser.add_argument("--nproc-per-node", type=_positive, default=None, metavar="N",
                        help="processes on this node (default: the scheduler's GPU count, else visible GPUs, "
                             "else 1)")
    parser.add_argument("--socket-ifname", default=None, metavar="IFACE",
                        help="network interface for NCCL/RCCL bootstrap and gloo "
                             "(NCCL_SOCKET_IFNAME, GLOO_SOCKET_IFNAME)")
    parser.add_argument("--vendor", default="auto", choices=("auto", *VENDORS),
                        help="GPU vendor whose defaults apply (default: from the installed torch build)")
    parser.add_argument("--grace-seconds", type=_positive, default=600, metavar="S",
                        help="how long torchrun waits for the trainer to checkpoint after a signal before killing it")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="[--] train TRAIN_FLAGS...")
    return parser


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def make_plan(args: argparse.Namespace, env: Env) -> LaunchPlan:
    module, trainer_args = trainer_module(args.command)
    topology = read_topology(args.platform, env, args.nproc_per_node, visible_gpu_count)
    vendor = gpu_vendor() if args.vendor == "auto" else args.vendor
    settings = comm_settings(env, vendor, args.socket_ifname)
    argv = torchrun_argv(topology, module, trainer_args, args.grace_seconds)
    dropped = sorted(name for name in env if name.startswith("PET_"))
    return LaunchPlan(topology, settings, argv, dropped)


def render_plan(plan: LaunchPlan, shm_note: str | None) -> str:
    """The plan as a shell snippet: comments for where values came from, exports, then the command."""
    topo, src = plan.topology, plan.topology.sources
    lines = [
        f"# platform: {topo.platform}; node {topo.node_rank} of {topo.nnodes}"
        + (" (hosts the rendezvous store)" if topo.is_rendezvous_host else ""),
        f"#   nnodes {topo.nnodes} <- {src['nnodes']}; node rank {topo.node_rank} <- {src['node_rank']}",
        f"#   rendezvous {topo.master_addr} <- {src['master_addr']}; port {topo.master_port} <- {src['master_port']}",
        f"#   processes per node {topo.nproc_per_node} <- {src['nproc_per_node']}; "
        f"run id {topo.run_id} <- {src['run_id']}",
    ]
    if shm_note:
        lines.append(f"# warning: {shm_note}")
    if plan.dropped:
        lines.append(f"# not passed to torchrun (read above instead): {' '.join(plan.dropped)}")
    lines += [f"export {s.name}={shlex.quote(s.value)}  # {s.reason}" for s in plan.settings]
    lines.append(shlex.join(plan.argv))
    return "\n".join(lines)


def shm_problem(path: Path = Path("/dev/shm")) -> str | None:
    """Why /dev/shm is too small for RCCL/NCCL, or None when it is fine."""
    fix = "(docker: --ipc=host or --shm-size=64g; Kubernetes: an emptyDir with medium: Memory at /dev/shm)"
    try:
        stats = os.statvfs(path)
    except OSError:
        return f"{path} is missing {fix}"
    size = stats.f_frsize * stats.f_blocks
    return f"{path} holds only {size >> 20} MiB {fix}" if size < SHM_MINIMUM else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)

    def body() -> int:
        log = setup_logging()
        style = exit_code_style(os.environ)
        plan = make_plan(args, os.environ)
        shm_note = shm_problem()
        if args.dry_run:
            print(render_plan(plan, shm_note))
            return 0
        if shm_note:
            log.warning("launcher: %s", shm_note)
        log.info("launcher: %s", shlex.join(plan.argv))
        return reported_exit_code(Supervisor(plan.argv, plan.child_env(os.environ)).run(), style)

    return run_verb(body, args.debug)
