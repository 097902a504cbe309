"""`python -m primus_bridge.train` / `primus-bridge train`: fine-tune from the contract's YAML and flags."""

import argparse
import sys

from .cli.errors import run_verb, wants_debug
from .config import add_config_arguments, load_config
from .engine import choose_engine, get_engine
from .logs import setup_logging
from .planner.gate import check_memory_before_training
from .run.report import finish_run
from .run.secrets import install_log_redaction

# Exit code after a clean save on SIGTERM/SIGUSR1; the SLURM templates requeue on it.
PREEMPTED_EXIT_CODE = 124


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m primus_bridge.train",
        description="Post-training (SFT, instruction/chat tuning, LoRA) on Megatron-Bridge, or the HF engine on CPU.",
    )
    add_config_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)

    def body() -> int:
        log = setup_logging()
        install_log_redaction(log)
        cfg = load_config(args)
        name, why = choose_engine(cfg)
        log.info(why)
        check_memory_before_training(cfg, log)
        result = get_engine(name).train(cfg)
        finish_run(cfg.checkpointing.save, result)
        return 0 if not result.preempted else PREEMPTED_EXIT_CODE

    return run_verb(body, wants_debug(argv))


if __name__ == "__main__":
    sys.exit(main())
