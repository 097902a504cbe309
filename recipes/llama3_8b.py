"""Llama 3 8B (meta-llama/Meta-Llama-3-8B).

Recommended parallelism, one node of 8 GPUs, sequence 4096, micro batch 1:
  SFT   H100: TP2 (sequence parallel); H200, B200, MI300X, MI325X, MI355X: TP1. PP1, no recompute.
  LoRA  every GPU: TP1 PP1, data parallel only.
"""

from ._base import Recipe
from primus_bridge.models.shape import ModelShape
from ._sizes import B8

SHAPE = ModelShape(
    model_type="llama", num_layers=32, hidden_size=4096, num_attention_heads=32, num_query_groups=8,
    ffn_hidden_size=14336, vocab_size=128256, max_position_embeddings=8192, rope_theta=500000.0,
    tied_embeddings=False, hf_id="meta-llama/Meta-Llama-3-8B",
)

RECIPE = Recipe(name="llama3_8b", shape=SHAPE, size=B8, template="llama3")
