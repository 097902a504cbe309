"""Llama 3.1 8B (meta-llama/Llama-3.1-8B): Llama 3 8B's layers with a 128K-token context.

Recommended parallelism: as llama3_8b (one node; SFT TP2 on H100, TP1 elsewhere; LoRA TP1 PP1).
"""

from dataclasses import replace

from . import llama3_8b

SHAPE = replace(llama3_8b.SHAPE, max_position_embeddings=131072, hf_id="meta-llama/Llama-3.1-8B")

RECIPE = replace(llama3_8b.RECIPE, name="llama31_8b", shape=SHAPE, template="llama3.1")
