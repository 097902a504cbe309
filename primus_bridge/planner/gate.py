"""`train` plans before it starts: a run the planner predicts will not fit is refused (unless --force).

Only GPU runs whose model shape is known (a recipe, or a local / cached HF config.json) are
planned; a CPU run such as the demo is never planned and never blocked.
"""

import logging
import os

from ..config import ConfigError, PrimusConfig
from ..hardware import GIB, detect_gpu_type, visible_gpu_count
from . import plan_config
from .advice import suggest
from .plan import Plan
from .report import plan_text
from .source import find_model_shape


def _world(visible_gpus: int) -> tuple[int, int]:
    """(GPUs in the job, GPUs per node) from torchrun's environment, else this machine's GPUs."""
    world = int(os.environ.get("WORLD_SIZE", visible_gpus) or visible_gpus)
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", min(world, visible_gpus)) or visible_gpus)
    return world, max(per_node, 1)


def plan_before_training(cfg: PrimusConfig, visible_gpus: int | None = None,
                         visible_type: str | None = None) -> Plan | None:
    """The plan for this run, or None when it is not planned (CPU run, unknown model or GPU type).

    visible_gpus / visible_type: what this machine has; detected when not given.
    """
    visible_gpus = visible_gpu_count() if visible_gpus is None else visible_gpus
    if not visible_gpus or find_model_shape(cfg) is None:
        return None
    gpu = cfg.gpu or visible_type or detect_gpu_type()
    if gpu is None:
        return None
    world, per_node = _world(visible_gpus)
    return plan_config(cfg, world, per_node, gpu)


def check_memory_before_training(cfg: PrimusConfig, log: logging.Logger, visible_gpus: int | None = None,
                                 visible_type: str | None = None) -> None:
    """Log the verdict; when the run will not fit, log the breakdown and raise ConfigError unless force is on.

    A model or GPU type the planner does not know is logged and never blocks the run.
    """
    try:
        plan = plan_before_training(cfg, visible_gpus, visible_type)
    except ValueError as err:
        log.info("memory plan skipped: %s", err)
        return
    if plan is None:
        return
    if plan.fits:
        log.info("memory plan: %.1f of %.1f GiB per GPU (%.0f%% headroom)", plan.memory.total / GIB,
                 plan.gpu.memory_gib, 100 * plan.headroom_fraction)
        return
    log.warning("memory plan:\n%s", plan_text(plan, suggest(plan)))
    if cfg.force:
        log.warning("memory plan says this run will not fit; starting anyway (force)")
        return
    short = f"needs {plan.memory.total / GIB:.1f} of {plan.gpu.memory_gib} GiB per GPU" if not plan.fits_in_memory \
        else "; ".join(plan.problems)
    raise ConfigError(f"memory plan: this run will not fit ({short}); apply one of the changes printed above, "
                      "or pass --force (force: true) to start anyway")
