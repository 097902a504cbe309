"""Qwen2.5 14B (Qwen/Qwen2.5-14B): 40 heads, 8 KV groups, bias on Q/K/V.

Recommended parallelism, one node, sequence 4096, micro batch 1, no recompute, PP1:
  SFT   H100: TP4; H200: TP2; B200 and the MI3xx: TP1.
  LoRA  H100: TP2; every other GPU: TP1.
"""

from ._base import Recipe
from primus_bridge.models.shape import ModelShape
from ._sizes import B14

SHAPE = ModelShape(
    model_type="qwen2", num_layers=48, hidden_size=5120, num_attention_heads=40, num_query_groups=8,
    ffn_hidden_size=13824, vocab_size=152064, max_position_embeddings=131072, rope_theta=1000000.0,
    tied_embeddings=False, hf_id="Qwen/Qwen2.5-14B", qkv_bias=True,
)

RECIPE = Recipe(name="qwen25_14b", shape=SHAPE, size=B14, template="qwen2.5")
