"""Llama 3.1 405B (meta-llama/Llama-3.1-405B).

126 layers: pipeline sizes must divide 126 (7, 9, 18 ...). Sequence 4096, micro batch 1, TP8 with
sequence parallel everywhere.
  SFT   H100: PP18 on 18 nodes; H200: PP9 on 18 nodes (DP2: the distributed optimizer halves the
        optimizer states and the Adam step's working copies); B200: PP7 on 14 nodes (DP2); MI300X: PP7
        on 7 nodes (full recompute on all of these); MI325X, MI355X: PP7 on 7 nodes without recompute.
  LoRA  H100: PP2 on 2 nodes with recompute; H200, B200: PP1 on 1 node with recompute;
        MI300X, MI325X, MI355X: PP1 on 1 node, no recompute.
"""

from ._base import LORA_LARGE, SFT_LARGE, Recipe, SizeClass, Tuning
from primus_bridge.models.shape import ModelShape

SHAPE = ModelShape(
    model_type="llama", num_layers=126, hidden_size=16384, num_attention_heads=128, num_query_groups=8,
    ffn_hidden_size=53248, vocab_size=128256, max_position_embeddings=131072, rope_theta=500000.0,
    tied_embeddings=False, hf_id="meta-llama/Llama-3.1-405B",
)

SIZE = SizeClass(
    sft={80: Tuning(tp=8, pp=18, recompute=True, nodes=18), 141: Tuning(tp=8, pp=9, recompute=True, nodes=18),
         180: Tuning(tp=8, pp=7, recompute=True, nodes=14), 192: Tuning(tp=8, pp=7, recompute=True, nodes=7),
         256: Tuning(tp=8, pp=7, nodes=7)},
    lora={80: Tuning(tp=8, pp=2, recompute=True, nodes=2), 141: Tuning(tp=8, recompute=True), 192: Tuning(tp=8)},
    sft_defaults=SFT_LARGE, lora_defaults=LORA_LARGE,
)

RECIPE = Recipe(name="llama31_405b", shape=SHAPE, size=SIZE, template="llama3.1")
