"""How many parameters one GPU holds on a pipeline stage, base model and LoRA adapters.

Tensor parallel splits every linear weight and the vocab-parallel embedding / output layer by TP
(RMSNorm weights are replicated but tiny, so they are split too here). Pipeline parallel gives each
stage num_layers / PP layers; the first stage also holds the embedding and the last the output layer
(with tied embeddings and PP > 1 Megatron keeps a copy of the embedding on the last stage too).
"""

import math

from ..models.shape import ModelShape
from .layout import Layout


def layers_per_stage(shape: ModelShape, layout: Layout) -> int:
    """Layers on the fullest stage (ceil when PP does not divide the layers: the plan flags that)."""
    return math.ceil(shape.num_layers / layout.pp)


def base_params_on_gpu(shape: ModelShape, layout: Layout, stage: int) -> float:
    """Base-model parameters one GPU of pipeline stage `stage` (0-based) holds."""
    first, last = stage == 0, stage == layout.pp - 1
    params = layers_per_stage(shape, layout) * shape.layer_params()
    if first:
        params += shape.embedding_params()
    if last:
        params += shape.hidden_size
        if not shape.tied_embeddings or layout.pp > 1:
            params += shape.embedding_params()
    return params / layout.tp


def lora_params_per_layer(shape: ModelShape, layout: Layout) -> float:
    """Adapter parameters of one layer on one GPU: r x (in + out) per adapter, split by TP.

    Megatron-Bridge's adapter splits both of its matrices over the TP ranks: on a column-parallel linear
    A (in -> r) by its r rows and B (r -> out) by its outputs, on a row-parallel linear A by its inputs and
    B by its outputs. Per-projection adapters (the engine's, as PEFT's) have one pair per projection.
    """
    if layout.lora is None:
        return 0.0
    r = layout.lora.rank
    return sum(r * (inp + out) for inp, out in layout.lora.adapter_dims(shape)) / layout.tp


def lora_params_on_gpu(shape: ModelShape, layout: Layout) -> float:
    return layers_per_stage(shape, layout) * lora_params_per_layer(shape, layout)
