"""Llama 3 70B (meta-llama/Meta-Llama-3-70B).

Recommended parallelism, sequence 4096, micro batch 1, sequence parallel on, no recompute:
  SFT   TP4 PP2 on 4 nodes of H200, 2 nodes of B200 / MI300X, 1 node of MI325X / MI355X;
        H100: TP8 PP4 on 4 nodes.
  LoRA  one node: TP8 on H100, TP4 on H200, TP2 on B200 and the MI3xx; PP1.
"""

from ._base import Recipe
from primus_bridge.models.shape import ModelShape
from ._sizes import B70

SHAPE = ModelShape(
    model_type="llama", num_layers=80, hidden_size=8192, num_attention_heads=64, num_query_groups=8,
    ffn_hidden_size=28672, vocab_size=128256, max_position_embeddings=8192, rope_theta=500000.0,
    tied_embeddings=False, hf_id="meta-llama/Meta-Llama-3-70B",
)

RECIPE = Recipe(name="llama3_70b", shape=SHAPE, size=B70, template="llama3")
