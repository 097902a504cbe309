"""Engine choice: `engine: auto | megatron | hf`."""

import importlib
import logging

from ..config import PrimusConfig
from ..hardware import visible_gpu_count
from ..run.result import TrainResult
from .base import Engine

log = logging.getLogger("primus_bridge")

ENGINE_MODULES = {"megatron": "primus_bridge.engine.megatron", "hf": "primus_bridge.engine.hf"}


def megatron_importable() -> tuple[bool, str]:
    """Whether Megatron-Bridge imports here (through the TE compatibility layer when TE is absent)."""
    try:
        from .megatron.compat import import_megatron_bridge

        import_megatron_bridge()
        return True, ""
    except Exception as err:  # noqa: BLE001 - any import failure means "not usable here"
        return False, f"{type(err).__name__}: {err}"


def choose_engine(cfg: PrimusConfig) -> tuple[str, str]:
    """(engine name, why) for the config's `engine` key."""
    if cfg.engine != "auto":
        return cfg.engine, f"engine: {cfg.engine} was asked for"
    gpus = visible_gpu_count()
    if not gpus:
        return "hf", "engine auto -> hf: no GPU visible (Megatron-Bridge training needs CUDA/ROCm)"
    ok, why_not = megatron_importable()
    if not ok:
        return "hf", f"engine auto -> hf: {gpus} GPU(s) visible but Megatron-Bridge does not import ({why_not})"
    return "megatron", f"engine auto -> megatron: {gpus} GPU(s) visible and Megatron-Bridge imports"


def get_engine(name: str) -> Engine:
    return importlib.import_module(ENGINE_MODULES[name]).ENGINE


__all__ = ["Engine", "TrainResult", "choose_engine", "get_engine", "megatron_importable"]
