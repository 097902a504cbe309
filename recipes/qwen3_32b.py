"""Qwen3 32B (Qwen/Qwen3-32B): 64 layers, 64 heads of 128 (wider than hidden / heads), 8 KV groups.

Recommended parallelism, sequence 4096, micro batch 1, no recompute, PP1:
  SFT   H100: TP8 on 2 nodes; H200, B200, MI300X: TP4 on 1 node; MI325X, MI355X: TP2 on 1 node.
  LoRA  one node: TP4 on H100; TP2 on H200, B200, MI300X; TP1 on MI325X, MI355X.
"""

from ._base import Recipe
from primus_bridge.models.shape import ModelShape
from ._sizes import B32

SHAPE = ModelShape(
    model_type="qwen3", num_layers=64, hidden_size=5120, num_attention_heads=64, num_query_groups=8,
    ffn_hidden_size=25600, vocab_size=151936, max_position_embeddings=40960, rope_theta=1000000.0,
    tied_embeddings=False, hf_id="Qwen/Qwen3-32B", kv_channels=128, qk_norm=True,
)

RECIPE = Recipe(name="qwen3_32b", shape=SHAPE, size=B32, template="qwen3")
