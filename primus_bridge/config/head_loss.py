"""Which LM-head loss a run uses: `model.head_loss` full, chunked, or auto (chunked wherever it applies and pays).

The engine (engine/megatron/chunked_head_loss.py) and the planner both read these, so they agree.
"""

from typing import Literal

from .schema import PrimusConfig

CHUNK_TOKENS = 1024
"""Tokens whose vocab-wide logits exist at once under the chunked loss."""
AUTO_MIN_VOCAB = 16384
"""Under auto, smaller vocabularies keep Megatron-Core's loss: their logits are small and the chunk loop is
not free (measurements in engine/megatron/chunked_head_loss.py)."""


def chunked_head_needs(cfg: PrimusConfig) -> list[str]:
    """The settings the chunked head loss needs that this config lacks (empty: it applies). `engine: auto` counts
    as the megatron engine: that is the engine it picks wherever the chunked loss can run (GPUs, Megatron-Bridge),
    and where it picks hf instead, preflight refuses a `head_loss` set away from auto."""
    return [what for what, ok in (("engine: megatron or auto", cfg.engine != "hf"),
                                  ("lora.use_lora: true (a frozen LM head)", cfg.lora.use_lora),
                                  ("parallelism.tensor_model_parallel_size: 1",
                                   cfg.parallelism.tensor_model_parallel_size == 1)) if not ok]


def head_loss_mode(cfg: PrimusConfig) -> Literal["full", "chunked"]:
    """chunked when asked for, or under auto where it applies (the vocabulary is checked by chunked_min_vocab)."""
    if cfg.model.head_loss == "auto":
        return "full" if chunked_head_needs(cfg) else "chunked"
    return cfg.model.head_loss


def chunked_min_vocab(cfg: PrimusConfig) -> int:
    """The smallest vocabulary the chunked loss is used for: AUTO_MIN_VOCAB under auto, any when asked for."""
    return AUTO_MIN_VOCAB if cfg.model.head_loss == "auto" else 0
