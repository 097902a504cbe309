"""Qwen3 8B (Qwen/Qwen3-8B): 36 layers, 32 heads, 8 KV groups, RMSNorm on Q and K.

Recommended parallelism, one node, sequence 4096, micro batch 1, no recompute:
  SFT   H100: TP2 (sequence parallel); every other GPU: TP1. PP1.
  LoRA  every GPU: TP1 PP1.
"""

from ._base import Recipe
from primus_bridge.models.shape import ModelShape
from ._sizes import B8

SHAPE = ModelShape(
    model_type="qwen3", num_layers=36, hidden_size=4096, num_attention_heads=32, num_query_groups=8,
    ffn_hidden_size=12288, vocab_size=151936, max_position_embeddings=40960, rope_theta=1000000.0,
    tied_embeddings=False, hf_id="Qwen/Qwen3-8B", qk_norm=True,
)

RECIPE = Recipe(name="qwen3_8b", shape=SHAPE, size=B8, template="qwen3")
