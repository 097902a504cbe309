"""The memory planner: per-GPU memory by part, fits or not, what to change, and an estimated speed.

`plan_config(cfg, world_size, gpus_per_node, gpu)` plans a validated config; `primus-bridge plan`
is its command line and `train` runs it before starting (see `gate.py`).
"""

from ..config import PrimusConfig
from ..hardware import gpu_type
from .layout import Layout, layout_from_config
from .plan import Plan, make_plan
from .source import find_model_shape
from .speed import DEFAULT_MFU


class ShapeUnknown(ValueError):
    """The config names no recipe and no local (or cached) HF model, so there is nothing to plan."""


def plan_config(cfg: PrimusConfig, world_size: int, gpus_per_node: int, gpu: str,
                mfu: float = DEFAULT_MFU) -> Plan:
    """Plan `cfg` on `world_size` GPUs of type `gpu`; ShapeUnknown when the model's shape is not known."""
    source = find_model_shape(cfg)
    if source is None:
        raise ShapeUnknown("the model's shape is unknown: give --recipe, or --hf_model_name_or_path pointing to a "
                           "local model folder (or a hub id in the local HF cache)")
    layout = layout_from_config(cfg, world_size, gpus_per_node)
    return make_plan(source.shape, layout, gpu_type(gpu), source.name, mfu)


__all__ = ["Layout", "Plan", "ShapeUnknown", "make_plan", "plan_config"]
