"""Which LM-head loss a run uses: `model.head_loss` full, chunked, or auto (chunked wherever it applies)."""

from typing import Literal

from .schema import PrimusConfig


def chunked_head_needs(cfg: PrimusConfig) -> list[str]:
    """The settings the chunked head loss needs that this config lacks (empty: it applies)."""
    return [what for what, ok in (("engine: megatron", cfg.engine == "megatron"),
                                  ("lora.use_lora: true (a frozen LM head)", cfg.lora.use_lora),
                                  ("parallelism.tensor_model_parallel_size: 1",
                                   cfg.parallelism.tensor_model_parallel_size == 1)) if not ok]


def head_loss_mode(cfg: PrimusConfig) -> Literal["full", "chunked"]:
    if cfg.model.head_loss == "auto":
        return "full" if chunked_head_needs(cfg) else "chunked"
    return cfg.model.head_loss
