"""Llama 3.1 70B (meta-llama/Llama-3.1-70B): Llama 3 70B's layers with a 128K-token context.

Recommended parallelism: as llama3_70b (SFT TP4 PP2 on 1-4 nodes, TP8 PP4 on 4 nodes of H100;
LoRA on one node with TP8 / TP4 / TP2 by GPU memory).
"""

from dataclasses import replace

from . import llama3_70b

SHAPE = replace(llama3_70b.SHAPE, max_position_embeddings=131072, hf_id="meta-llama/Llama-3.1-70B")

RECIPE = replace(llama3_70b.RECIPE, name="llama31_70b", shape=SHAPE, template="llama3.1")
