"""Mistral 7B v0.3 (mistralai/Mistral-7B-v0.3): 32K vocabulary, full attention (no sliding window).

Recommended parallelism, one node, sequence 4096, micro batch 1, no recompute:
  SFT   H100: TP2 (sequence parallel); every other GPU: TP1. PP1.
  LoRA  every GPU: TP1 PP1.
"""

from ._base import Recipe
from primus_bridge.models.shape import ModelShape
from ._sizes import B8

SHAPE = ModelShape(
    model_type="mistral", num_layers=32, hidden_size=4096, num_attention_heads=32, num_query_groups=8,
    ffn_hidden_size=14336, vocab_size=32768, max_position_embeddings=32768, rope_theta=1000000.0,
    tied_embeddings=False, hf_id="mistralai/Mistral-7B-v0.3",
)

RECIPE = Recipe(name="mistral_7b", shape=SHAPE, size=B8, template="mistral-v3")
