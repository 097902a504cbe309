"""Llama 3.2 1B (meta-llama/Llama-3.2-1B), tied embeddings.

Recommended parallelism: one node, TP1 PP1 (data parallel only) for SFT and LoRA on every GPU;
sequence 4096, micro batch 1, no recompute.
"""

from ._base import Recipe
from primus_bridge.models.shape import ModelShape
from ._sizes import SMALL

SHAPE = ModelShape(
    model_type="llama", num_layers=16, hidden_size=2048, num_attention_heads=32, num_query_groups=8,
    ffn_hidden_size=8192, vocab_size=128256, max_position_embeddings=131072, rope_theta=500000.0,
    tied_embeddings=True, hf_id="meta-llama/Llama-3.2-1B",
)

RECIPE = Recipe(name="llama32_1b", shape=SHAPE, size=SMALL, template="llama3.1")
