"""`primus-bridge plan`: per-GPU memory by part, fits or not (and what to change), and an estimated speed.
Exit code 0 when the run fits, 1 when it does not (the report says why), 2 for a config problem.

  primus-bridge plan --recipe llama3_70b --mode sft --gpu mi300x --nodes 4 [--json]
  primus-bridge plan --config my.yaml --gpu h200 --nodes 2
"""

import argparse
import json
import sys

from ..cli.errors import run_verb, wants_debug
from ..cli.parser import ArgumentParser
from ..config import ConfigError, add_config_arguments, load_config
from ..hardware import detect_gpu_type
from ..run.exit_codes import DOES_NOT_FIT_EXIT_CODE
from . import plan_config
from .advice import suggest
from .report import plan_dict, plan_text
from .speed import DEFAULT_MFU


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="primus-bridge plan", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    plan = parser.add_argument_group("plan")
    plan.add_argument("--mode", choices=("sft", "lora"), help="full fine-tuning or LoRA (default: from the config)")
    plan.add_argument("--nodes", type=int, default=1, help="nodes to plan for [default: 1]")
    plan.add_argument("--gpus_per_node", type=int, default=8, help="GPUs per node [default: 8]")
    plan.add_argument("--mfu", type=float, default=DEFAULT_MFU,
                      help=f"assumed fraction of the bf16 peak for the speed estimate [default: {DEFAULT_MFU}]")
    plan.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    add_config_arguments(parser)
    return parser


def _check_counts(args: argparse.Namespace) -> None:
    for flag, value in (("--nodes", args.nodes), ("--gpus_per_node", args.gpus_per_node)):
        if value < 1:
            raise ConfigError(f"{flag}: got {value}; use a whole number of at least 1")
    if not 0 < args.mfu <= 1:
        raise ConfigError(f"--mfu: got {args.mfu}; use a fraction of the peak between 0 and 1, e.g. 0.4")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    if args.mode is not None:
        setattr(args, "flag:lora.use_lora", args.mode == "lora")

    def body() -> int:
        _check_counts(args)
        cfg = load_config(args)
        gpu = cfg.gpu or detect_gpu_type()
        if gpu is None:
            raise ConfigError("plan: no GPU type given and none visible; pass --gpu (mi300x, mi325x, mi355x, "
                              "h100, h200, b200)")
        try:
            plan = plan_config(cfg, args.nodes * args.gpus_per_node, args.gpus_per_node, gpu, args.mfu)
        except ValueError as err:  # ShapeUnknown, an unknown GPU type, an unreadable config.json
            raise ConfigError(f"plan: {err}") from None
        suggestions = [] if plan.fits else suggest(plan)
        print(json.dumps(plan_dict(plan, suggestions), indent=2) if args.json else plan_text(plan, suggestions))
        return 0 if plan.fits else DOES_NOT_FIT_EXIT_CODE

    return run_verb(body, wants_debug(argv))

