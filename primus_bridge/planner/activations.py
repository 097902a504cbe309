"""Activation memory: what the forward pass keeps for the backward pass, per GPU.

Follows Korthikanti et al., "Reducing Activation Recomputation in Large Transformer Models"
(2022), section 4, adapted to the Llama layout (RMSNorm, GQA, SwiGLU, no dropout) and to
flash / SDPA attention, which keeps no s x s score matrix (their 5as/h term is gone). Bytes a
layer keeps per token, in bf16 (2 bytes) unless noted, with h hidden, q = heads x head size,
kv = KV groups x head size, f the SwiGLU size, t = TP:

  input RMSNorm input, QKV linear input,          4 x 2h            (/t with sequence parallel,
  pre-MLP RMSNorm input, FC1 linear input                            else replicated on each TP rank)
  Q, K, V after RoPE (attention inputs)           2(q + 2kv) / t
  attention softmax statistics (fp32)             4 x heads / t
  attention output (output projection input)      2q / t
  FC1 output, gate and up (SwiGLU input)          2 x 2f / t
  SwiGLU output (FC2 input)                       2f / t

For Llama 3 8B (q = h, kv = h/4, f = 3.5h) this is 34h bytes per token at t = 1, the paper's
34sbh. Under LoRA the frozen base linears keep no input: a linear's input is kept by its adapters
(2 bytes; with dropout a dropped-out copy and the mask per adapter instead, 3 bytes each, except where the
LoRA fast path runs a fused layer's adapters together: the input once and a mask per adapter, 2 + n) or,
for the output projection, by the attention anyway; an untargeted linear's input is not kept at all (see
linear_input_bytes). Context parallel divides the tokens by CP. Full recompute keeps only each recompute
chunk's input (2h per token); selective recompute re-runs core attention only, whose s x s
scores flash attention never stores, so it saves just the softmax statistics.
"""

import math

from ..config.head_loss import CHUNK_TOKENS
from ..models.shape import ModelShape
from .layout import Layout
from .params import layers_per_stage


def _replicated_divisor(layout: Layout) -> int:
    """Tensors in the layer-norm region are split by TP only with sequence parallel."""
    return layout.tp if layout.sequence_parallel else 1


KEPT_BY_ATTENTION = frozenset({"linear_proj"})
"""The output projection's input is the attention output, which the attention's backward keeps anyway."""
GROUPED = frozenset({"linear_qkv", "linear_fc1"})
"""Fused layers whose per-projection adapters the LoRA fast path (TP 1) runs together."""


def _linear_inputs(shape: ModelShape, layout: Layout) -> dict[str, float]:
    """Elements of each linear layer's input per token on one GPU."""
    rep, t = _replicated_divisor(layout), layout.tp
    return {"linear_qkv": shape.hidden_size / rep, "linear_proj": shape.query_size / t,
            "linear_fc1": shape.hidden_size / rep, "linear_fc2": shape.ffn_hidden_size / t}


def linear_input_bytes(shape: ModelShape, layout: Layout) -> float:
    """Bytes per token the layer keeps of its linear layers' inputs for their backward.

    A trained linear keeps its bf16 input (2 bytes). Under LoRA the base linear is frozen and keeps none
    (Megatron-Core's LinearWithFrozenWeight saves only its weight); its adapters keep the same input
    without dropout (2), or with dropout each a dropped-out copy and its mask (3 each, on top of what others
    keep). The fast path's grouped adapters of a fused layer (TP 1) keep the input and one mask each (2 + n).
    With recompute_mlp_activation FC2's input itself is not kept (a dropped-out copy still is).
    """
    inputs = _linear_inputs(shape, layout)
    if layout.recompute_mlp_activation:  # rebuilt from the SwiGLU input in the backward (swiglu_recompute)
        inputs["linear_fc2"] = 0 if layout.lora is None or layout.lora.dropout == 0 else inputs["linear_fc2"]
    if layout.lora is None:
        return sum(2 * n for n in inputs.values())
    total = 0.0
    for name, n in inputs.items():
        kept, adapters = 2 if name in KEPT_BY_ATTENTION else 0, layout.lora.adapters_on(name)
        if adapters and layout.lora.dropout == 0:
            kept = max(kept, 2)
        elif adapters and grouped_dropout(layout, name):
            kept = max(kept, 2) + adapters
        elif adapters:
            kept += 3 * adapters
        total += kept * n
    return total


def grouped_dropout(layout: Layout, module: str) -> bool:
    """Whether the fast path runs `module`'s adapters with dropout together (lora_fast_path.DroppedLowRank)."""
    return module in GROUPED and layout.lora.layout == "per_projection" and layout.tp == 1


def softmax_stats_bytes(shape: ModelShape, layout: Layout) -> float:
    return 4 * shape.num_attention_heads / layout.tp


def layer_bytes_per_token(shape: ModelShape, layout: Layout) -> float:
    """Bytes one layer keeps for its backward, per token, on one GPU, without recompute."""
    h, t = shape.hidden_size, layout.tp
    q, kv, f = shape.query_size, shape.kv_size, shape.ffn_hidden_size
    norm_inputs = 2 * 2 * h / _replicated_divisor(layout)
    attention = 2 * (q + 2 * kv) / t + softmax_stats_bytes(shape, layout)
    swiglu_input = 2 * 2 * f / t
    return norm_inputs + attention + swiglu_input + linear_input_bytes(shape, layout)


def layer_input_bytes_per_token(shape: ModelShape, layout: Layout) -> float:
    """What full recompute keeps per chunk: the chunk's input hidden states."""
    return 2 * shape.hidden_size / _replicated_divisor(layout)


def tokens_per_micro_batch(layout: Layout) -> float:
    return layout.micro_batch * layout.seq_length / layout.cp


def kept_bytes_per_token(shape: ModelShape, layout: Layout, layers: int) -> float:
    """Bytes `layers` consecutive layers keep per token under the layout's recompute setting."""
    full, kept_input = layer_bytes_per_token(shape, layout), layer_input_bytes_per_token(shape, layout)
    if layout.recompute == "none":
        return layers * full
    if layout.recompute == "selective":
        return layers * (full - softmax_stats_bytes(shape, layout))
    n = layout.recompute_num_layers
    if layout.recompute_method == "uniform":
        return math.ceil(layers / n) * kept_input
    recomputed = min(n, layers)
    return recomputed * kept_input + (layers - recomputed) * full


def in_flight_chunks(layout: Layout, stage: int) -> int:
    """Model chunks x micro batches whose activations a stage holds at once under 1F1B.

    Plain 1F1B: stage r runs PP - r warm-up forwards before its first backward. Interleaved
    (VPP = v chunks per stage): 2(PP - r - 1) + (v - 1)PP warm-up forwards of one chunk each.
    Never more than the micro batches of one step.
    """
    p, m, v = layout.pp, layout.micro_batches_per_step, layout.vpp or 1
    if v == 1:
        return min(p - stage, m)
    return min(2 * (p - stage - 1) + (v - 1) * p + 1, m * v)


def stage_activation_bytes(shape: ModelShape, layout: Layout, stage: int) -> float:
    """Activations one GPU of `stage` holds at its peak, plus one layer's backward working set.

    The working set is the layer (or recompute chunk) whose backward is running: its
    activations exist in full while it runs, whatever the recompute setting.
    """
    v = layout.vpp or 1
    chunk_layers = max(layers_per_stage(shape, layout) // v, 1)
    tokens = tokens_per_micro_batch(layout)
    kept = in_flight_chunks(layout, stage) * kept_bytes_per_token(shape, layout, chunk_layers)
    working_layers = layout.recompute_num_layers if layout.recompute == "full" and \
        layout.recompute_method == "uniform" else 1
    working = min(working_layers, chunk_layers) * layer_bytes_per_token(shape, layout)
    return (kept + working) * tokens


LOGIT_BYTES = 10
"""Per token and vocabulary entry at the loss, measured on the H200 (calibration report): the bf16 logits
(2), the fp32 copy the vocab-parallel cross entropy keeps as its softmax (4) and the fp32 gradient its
backward builds before the cast back to bf16 (4)."""


CHUNKED_LOGIT_BYTES = 4
"""Per token of a chunk and vocabulary entry under model.head_loss: chunked, on a GPU: the bf16 logits (2) and the
bf16 logit gradient the compiled chunk kernels write from them (2; chunked_head_loss.logit_loss_and_gradient keeps
its fp32 work in registers). Eager (before the chunk kernels were compiled) it was 10, and the 8B s4096 H200 run's
peak was then planned 2.0% low."""


def chunked_head(shape: ModelShape, layout: Layout) -> bool:
    """Whether the run computes its loss with the chunked frozen-head loss (model.head_loss)."""
    return layout.head_loss == "chunked" and shape.vocab_size >= layout.head_loss_min_vocab


def logits_bytes(shape: ModelShape, layout: Layout) -> float:
    """Last stage, one micro batch: the loss's vocab-wide tensors (LOGIT_BYTES each, vocab / TP wide)
    and the final RMSNorm input and output (2 x 2h). Chunked (frozen head, TP 1): vocab-wide tensors for
    one chunk only, plus the hidden-state gradient computed in the forward (2h per token)."""
    tokens = tokens_per_micro_batch(layout)
    norm = 4 * shape.hidden_size / _replicated_divisor(layout) * tokens
    if chunked_head(shape, layout):
        return norm + 2 * shape.hidden_size * tokens + \
            CHUNKED_LOGIT_BYTES * shape.vocab_size * min(tokens, CHUNK_TOKENS)
    return norm + LOGIT_BYTES * shape.vocab_size / layout.tp * tokens
