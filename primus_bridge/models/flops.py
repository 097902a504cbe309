"""Model FLOPs per trained token of a dense GQA decoder (Megatron-Bridge's formula), with LoRA's 2/3 rule.

Per token, with L layers, hidden h, vocab V, n_q query heads of size d and row length s:

    full SFT:  6 * (P_linear + h*V) + 6 * L * (n_q*d) * s

- P_linear: weights of every projection (q, k, v, o, gate, up, down) in all layers; h*V is the LM head
  (counted even when tied to the embedding, whose lookup costs no FLOPs). Norms and biases are left out.
- 6 = 2 (forward) + 2 (gradient w.r.t. the input) + 2 (gradient w.r.t. the weight), per weight.
- Attention core: QK^T and PV cost 2*(n_q*d)*s each per token forward, halved for causal masking, times 3
  for forward + backward: 6*(n_q*d)*s per layer. s is the row length (seq_length), as Megatron-Bridge
  counts it; with packing each token attends only within its document, so this is the full-row figure
  and the same for every system compared.
- LoRA: frozen weights need no weight gradient, so their term is 4 (2/3 of 6); the adapters (r*(in+out)
  per adapter: one adapter per projection, as PEFT and both engines train) are trained and count 6.
  The attention core has no weights and keeps its 6.
"""

from .lora import LoraSpec
from .shape import ModelShape


def linear_params(shape: ModelShape) -> int:
    """Weights of all projections of all layers (no embedding, no LM head, no norms)."""
    per_layer = sum(inp * out for inp, out in shape.linear_dims().values())
    return per_layer * shape.num_layers


def lm_head_params(shape: ModelShape) -> int:
    return shape.hidden_size * shape.vocab_size


def lora_params(shape: ModelShape, lora: LoraSpec) -> int:
    """Adapter weights: r*(in+out) for every adapter in every layer."""
    return lora.params(shape)


def attention_flops_per_token(shape: ModelShape, seq_length: int) -> int:
    return 6 * shape.num_layers * shape.num_attention_heads * shape.head_dim * seq_length


def flops_per_token(shape: ModelShape, seq_length: int, lora: LoraSpec | None = None) -> int:
    """Model FLOPs (forward + backward) per token; see the module docstring for the formula."""
    dense = linear_params(shape) + lm_head_params(shape)
    if lora is None:
        weight_flops = 6 * dense
    else:
        weight_flops = 4 * dense + 6 * lora_params(shape, lora)
    return weight_flops + attention_flops_per_token(shape, seq_length)


FORMULA_TEXT = (
    "model FLOPs per token = 6*(P_linear + h*V) + 6*L*(n_q*d)*s for full SFT; under LoRA the frozen "
    "weights count 4 instead of 6 (no weight gradient, the 2/3 rule) and the adapters count 6: "
    "4*(P_linear + h*V) + 6*P_lora + 6*L*(n_q*d)*s. P_linear: q,k,v,o,gate,up,down weights of all layers; "
    "h*V: LM head; s: row length (seq_length); causal attention counted as half the full square."
)
