"""One system on one case in a fresh process: `python -m primus_bridge.bench.worker --config C.json --out R.json`.

A fresh process per system keeps peak memory, CUDA state and compiled kernels from leaking between
systems. It trains through the same engine entry a user's run takes and writes the TrainResult.
"""

import argparse
import json
import os
import resource
import sys
from pathlib import Path

from ..config.layers import Layer
from ..config.resolve import resolve
from ..engine import get_engine
from ..logs import setup_logging
from ..planner.gate import plan_before_training
from ..run.report import result_to_json
from ..utils.atomic import atomic_write_text


def peak_rss_bytes() -> int:
    """This process's peak resident memory (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def planned_memory(cfg) -> dict[str, float]:
    """The planner's per-GPU memory for this run, bytes by part (empty where it plans none: the hf engine, a CPU,
    an unknown model or GPU), so the report can set it beside the measured peak."""
    if cfg.engine != "megatron":
        return {}
    try:
        plan = plan_before_training(cfg)
    except ValueError:
        return {}
    return plan.memory.as_dict() if plan is not None else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m primus_bridge.bench.worker", description=__doc__)
    parser.add_argument("--config", required=True, type=Path, help="the run's config values (JSON, YAML layout)")
    parser.add_argument("--out", required=True, type=Path, help="where to write the result (JSON)")
    args = parser.parse_args(argv)
    log = setup_logging()
    values = json.loads(args.config.read_text(encoding="utf-8"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    cfg = resolve([Layer(f"bench config {args.config}", values)], world_size=world_size)[0]
    log.info("bench worker: engine %s, %s", cfg.engine, args.config)
    result = get_engine(cfg.engine).train(cfg)
    if os.environ.get("RANK", "0") == "0":
        record = {"train_result": result_to_json(result), "peak_rss": peak_rss_bytes(),
                  "planned_memory": planned_memory(cfg)}
        atomic_write_text(args.out, json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
