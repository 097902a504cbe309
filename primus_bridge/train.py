"""`python -m primus_bridge.train` / `primus-bridge train`: fine-tune from the contract's YAML and flags.

Before any model load or data read, everything that can be checked is checked and every problem is
reported at once (exit 2): the config, the memory plan, the outputs (run/preflight.py). A rerun of a run
that already finished and exported does nothing (exit 0). The checkpoint folder is locked for the run.
Exit codes: run/exit_codes.py.
"""

import contextlib
import os
import sys

from .cli.errors import run_verb, wants_debug
from .cli.parser import ArgumentParser
from .config import ConfigError, PrimusConfig, add_config_arguments, load_config
from .engine import choose_engine, get_engine
from .logs import setup_logging
from .planner.gate import check_memory_before_training
from .run.exit_codes import PREEMPTED_EXIT_CODE, record_exit
from .run.lock import CheckpointLock
from .run.preflight import finished_export, preflight_problems
from .run.report import finish_run
from .run.secrets import install_log_redaction

__all__ = ["PREEMPTED_EXIT_CODE", "build_parser", "main"]


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="primus-bridge train",
        description="Post-training (SFT, instruction/chat tuning, LoRA) on Megatron-Bridge, or the HF engine on CPU.",
    )
    add_config_arguments(parser)
    return parser


class TrainChecks:
    """train's own checks, run by the config loader so that their problems come with the config's."""

    def __init__(self, log):
        self.log = log
        self.engine: str | None = None

    def __call__(self, cfg: PrimusConfig) -> list[str]:
        self.engine, why = choose_engine(cfg)
        self.log.info(why)
        problems = preflight_problems(cfg, self.engine)
        try:
            check_memory_before_training(cfg, self.log)
        except ConfigError as err:
            problems += err.messages
        return problems


def checkpoint_lock(cfg: PrimusConfig):
    """The checkpoint folder's lock, taken by the job's first process (the others do not write there)."""
    if not cfg.checkpointing.save or os.environ.get("RANK", "0") != "0":
        return contextlib.nullcontext()
    return CheckpointLock(cfg.checkpointing.save)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)

    def body() -> int:
        log = setup_logging()
        install_log_redaction(log)
        checks = TrainChecks(log)
        cfg = load_config(args, extra_checks=checks)
        done = finished_export(cfg)
        if done is not None:
            log.info("nothing to do: %s holds the final checkpoint (step %d) and %s its export; keeping both",
                     cfg.checkpointing.save, cfg.training.train_iters, done)
            return 0
        with checkpoint_lock(cfg):
            result = get_engine(checks.engine).train(cfg)
        finish_run(cfg.checkpointing.save, result)
        if not result.preempted:
            return 0
        # Every rank records it: under torchrun a rank that saw no signal itself still reports a requeue.
        record_exit(PREEMPTED_EXIT_CODE, "preempted: the step finished and a checkpoint was saved")
        return PREEMPTED_EXIT_CODE

    return run_verb(body, wants_debug(argv))


if __name__ == "__main__":
    sys.exit(main())
