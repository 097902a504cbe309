"""`activation_checkpointing:` — trade compute for activation memory."""

from typing import Literal

from pydantic import Field

from .base import Section


class RecomputeConfig(Section):
    recompute_activations: bool = False
    """Recompute activations in the backward pass (gradient checkpointing)."""
    recompute_granularity: Literal["full", "selective"] = "full"
    """full: whole layers; selective: attention core only (megatron engine)."""
    recompute_method: Literal["uniform", "block"] = "uniform"
    """How layers are chosen for full recompute (megatron engine)."""
    recompute_num_layers: int = Field(default=1, ge=1)
    """Layers per recompute chunk (uniform) or layers recomputed per stage (block)."""
    recompute_mlp_activation: bool = True
    """Megatron engine: keep the SwiGLU input only and recompute its output in the backward (one
    element-wise kernel a layer; saves 2 bytes per token and FFN unit per layer, e.g. 3.5 GiB for
    Llama-3-8B at 4,096 tokens; engine/megatron/compat/swiglu_recompute.py)."""
