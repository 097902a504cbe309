"""`model:` — where the starting weights come from and which layer implementation runs them."""

from typing import Literal

from pydantic import Field

from .base import Section


class ModelConfig(Section):
    load: str | None = None
    """Megatron checkpoint to start from (flag --load)."""
    tokenizer: str | None = None
    """Tokenizer folder or hub id; defaults to hf_model_name_or_path."""
    transformer_impl: Literal["auto", "transformer_engine", "local"] = "auto"
    """Megatron layer spec: TransformerEngine when it imports (auto), or the local spec with SDPA attention."""
    head_loss: Literal["auto", "full", "chunked"] = "auto"
    """Megatron engine (also under engine: auto), LoRA at TP 1: "chunked" runs the LM head and cross-entropy 1,024
    tokens at a time, so the vocab-wide logits never exist for the whole micro batch (about 10 bytes per token and
    vocab entry saved, and faster on a GPU; engine/megatron/chunked_head_loss.py). auto: chunked there for
    vocabularies of 16,384+ entries, else full."""
    cuda_graph: Literal["none", "full_iteration"] = "none"
    """Megatron engine on a GPU: "full_iteration" records each training step's forward and backward passes (every
    micro batch) as one CUDA graph at the third step and replays it from then on, so the host no longer launches
    every kernel of the step (engine/megatron/cuda_graph.py). Needs the local spec and pipeline and context
    parallel size 1; a non-finite loss is then caught once a step, on the gradient norm before the update."""
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2", "flex_attention"] = "auto"
    """HF engine attention kernel; auto picks the best available."""
    liger_kernel: bool = False
    """HF engine: apply the `liger-kernel` package's Triton kernels to the model (RMSNorm, SwiGLU, RoPE and
    the fused linear cross-entropy, which never materialises the logits); needs liger-kernel and a GPU."""
    trust_remote_code: bool = False
    """Allow model code from the model folder (HF engine)."""
    max_position_embeddings: int | None = Field(default=None, gt=0)
    """Model's position limit, when known before loading (recipes fill it in)."""
    num_attention_heads: int | None = Field(default=None, gt=0)
    """Attention heads, when known before loading (recipes fill it in); used to check TP."""
    num_query_groups: int | None = Field(default=None, gt=0)
    """KV heads (GQA groups), when known before loading; used to check TP."""
