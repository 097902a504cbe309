"""Qwen2.5 32B (Qwen/Qwen2.5-32B): 64 layers, 40 heads, 8 KV groups, bias on Q/K/V.

Recommended parallelism, sequence 4096, micro batch 1, no recompute, PP1:
  SFT   H100: TP8 on 2 nodes; H200, B200, MI300X: TP4 on 1 node; MI325X, MI355X: TP2 on 1 node.
  LoRA  one node: TP4 on H100; TP2 on H200, B200, MI300X; TP1 on MI325X, MI355X.
"""

from ._base import Recipe
from primus_bridge.models.shape import ModelShape
from ._sizes import B32

SHAPE = ModelShape(
    model_type="qwen2", num_layers=64, hidden_size=5120, num_attention_heads=40, num_query_groups=8,
    ffn_hidden_size=27648, vocab_size=152064, max_position_embeddings=131072, rope_theta=1000000.0,
    tied_embeddings=False, hf_id="Qwen/Qwen2.5-32B", qkv_bias=True,
)

RECIPE = Recipe(name="qwen25_32b", shape=SHAPE, size=B32, template="qwen2.5")
