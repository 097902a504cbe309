"""Merging the LoRA adapters of some projections of a fused layer into the exported HF weights.

Why this module exists: Megatron-Bridge 0.6.2's `MegatronPeftBridge._merge_lora_adapter_weights` merges a
fused layer's per-projection adapters (CanonicalLoRA: q, k, v on `linear_qkv`; gate, up on `linear_fc1`)
only when every projection of the layer has one. A run that lists q_proj and v_proj, say, would export
unmerged weights for that layer. `merge_listed_projections` merges the adapters present into their
projections' HF weights and leaves the others as they are.

Registry entry `listed_projection_merge`, installed by `use_listed_projection_merge()`; any other layer
(experts, adapters that are not per projection) goes to Megatron-Bridge's merge unchanged.
"""

from .marker import replace_once

ENTRY = "listed_projection_merge"


def merge_listed_projections(bridge, converted: dict, adapter_weights: list) -> dict | None:
    """HF weights of one Megatron layer with its per-projection adapters merged (each into the HF weight of
    its projection); None when these are not per-projection adapters of a dense layer."""
    from megatron.bridge.models.conversion.peft_bridge import ADAPTER_NAME_MAP
    from megatron.bridge.peft.utils import is_expert_linear

    by_key = {weight.adapter_key: weight for weight in adapter_weights}
    if not converted or not by_key or not set(by_key) <= set(ADAPTER_NAME_MAP.values()) or any(
            is_expert_linear(weight.global_base_prefix) for weight in adapter_weights):
        return None
    merged = dict(converted)
    for hf_name, base in converted.items():
        key = next((key for suffix, key in ADAPTER_NAME_MAP.items() if hf_name.endswith(suffix)), None)
        if key in by_key:
            weight = by_key[key]
            merged[hf_name] = bridge._merge_single_adapter_weight(base, weight.alpha, weight.dim,
                                                                  weight.linear_in_weight.weight,
                                                                  weight.linear_out_weight.weight)
    return merged


def use_listed_projection_merge() -> None:
    """Megatron-Bridge's LoRA merge, with `merge_listed_projections` first (idempotent)."""
    from megatron.bridge.models.conversion.peft_bridge import MegatronPeftBridge

    def make(library_merge):
        def merge(self, megatron_model, converted_weights_dict, adapter_weights):
            merged = merge_listed_projections(self, converted_weights_dict, adapter_weights)
            if merged is None:
                return library_merge(self, megatron_model, converted_weights_dict, adapter_weights)
            return merged

        merge.__doc__ = merge_listed_projections.__doc__
        return merge

    replace_once(ENTRY, MegatronPeftBridge, "_merge_lora_adapter_weights", make)
