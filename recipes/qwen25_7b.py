"""Qwen2.5 7B (Qwen/Qwen2.5-7B): 28 heads, 4 KV groups, bias on Q/K/V.

Recommended parallelism, one node, sequence 4096, micro batch 1, no recompute:
  SFT   H100: TP2 (sequence parallel); every other GPU: TP1. PP1.
  LoRA  every GPU: TP1 PP1.
"""

from ._base import Recipe
from primus_bridge.models.shape import ModelShape
from ._sizes import B8

SHAPE = ModelShape(
    model_type="qwen2", num_layers=28, hidden_size=3584, num_attention_heads=28, num_query_groups=4,
    ffn_hidden_size=18944, vocab_size=152064, max_position_embeddings=131072, rope_theta=1000000.0,
    tied_embeddings=False, hf_id="Qwen/Qwen2.5-7B", qkv_bias=True,
)

RECIPE = Recipe(name="qwen25_7b", shape=SHAPE, size=B8, template="qwen2.5")
