"""Qwen2.5 72B (Qwen/Qwen2.5-72B): 80 layers, 64 heads, 8 KV groups, bias on Q/K/V.

Recommended parallelism, sequence 4096, micro batch 1, sequence parallel on, no recompute:
  SFT   TP4 PP2 on 4 nodes of H200, 2 nodes of B200 / MI300X, 1 node of MI325X / MI355X;
        H100: TP8 PP4 on 4 nodes.
  LoRA  one node: TP8 on H100, TP4 on H200, TP2 on B200 and the MI3xx; PP1.
"""

from ._base import Recipe
from primus_bridge.models.shape import ModelShape
from ._sizes import B70

SHAPE = ModelShape(
    model_type="qwen2", num_layers=80, hidden_size=8192, num_attention_heads=64, num_query_groups=8,
    ffn_hidden_size=29568, vocab_size=152064, max_position_embeddings=131072, rope_theta=1000000.0,
    tied_embeddings=False, hf_id="Qwen/Qwen2.5-72B", qkv_bias=True,
)

RECIPE = Recipe(name="qwen25_72b", shape=SHAPE, size=B70, template="qwen2.5")
