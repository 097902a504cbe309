"""LoRA targets: the contract's HF module names -> Megatron-Bridge PEFT on Megatron-Core's layer names.

Megatron fuses q/k/v into `linear_qkv` and gate/up into `linear_fc1`. When all of q_proj, k_proj,
v_proj are listed (and both or neither of gate_proj/up_proj), one adapter on each fused layer (`LoRA`)
is used: one matmul pair instead of three, and its export to a PEFT adapter is exact. Listing only
some of a fused group needs per-projection adapters (`CanonicalLoRA`: linear_q, linear_k, linear_v,
linear_fc1_gate, linear_fc1_up).
"""

from dataclasses import dataclass

from ...config import ConfigError
from ...config.sections.lora import LoraConfig

HF_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
QKV = {"q_proj", "k_proj", "v_proj"}
GATE_UP = {"gate_proj", "up_proj"}

FUSED_NAMES = {"q_proj": "linear_qkv", "k_proj": "linear_qkv", "v_proj": "linear_qkv", "o_proj": "linear_proj",
               "gate_proj": "linear_fc1", "up_proj": "linear_fc1", "down_proj": "linear_fc2"}
CANONICAL_NAMES = {"q_proj": "linear_q", "k_proj": "linear_k", "v_proj": "linear_v", "o_proj": "linear_proj",
                   "gate_proj": "linear_fc1_gate", "up_proj": "linear_fc1_up", "down_proj": "linear_fc2"}


@dataclass(frozen=True)
class LoraTargets:
    canonical: bool
    """True: per-projection adapters (CanonicalLoRA); False: adapters on the fused layers (LoRA)."""
    megatron_modules: tuple[str, ...]


def map_targets(hf_names: list[str]) -> LoraTargets:
    """Megatron module names for `lora.lora_target_modules`; unknown names raise a ConfigError."""
    unknown = [name for name in hf_names if name not in HF_MODULES]
    if unknown:
        raise ConfigError(f"lora.lora_target_modules: unknown module name(s) {', '.join(map(repr, unknown))}; "
                          f"valid names: {', '.join(HF_MODULES)}")
    if not hf_names:
        raise ConfigError(f"lora.lora_target_modules: empty; list some of {', '.join(HF_MODULES)}")
    chosen = set(hf_names)
    partial_group = any(0 < len(chosen & group) < len(group) for group in (QKV, GATE_UP))
    names = CANONICAL_NAMES if partial_group else FUSED_NAMES
    ordered = dict.fromkeys(names[name] for name in HF_MODULES if name in chosen)
    return LoraTargets(canonical=partial_group, megatron_modules=tuple(ordered))


def build_peft(lora: LoraConfig):
    """Megatron-Bridge's LoRA or CanonicalLoRA with the run's rank, alpha and dropout."""
    from megatron.bridge.peft.canonical_lora import CanonicalLoRA
    from megatron.bridge.peft.lora import LoRA

    targets = map_targets(list(lora.lora_target_modules))
    peft_class = CanonicalLoRA if targets.canonical else LoRA
    return peft_class(target_modules=list(targets.megatron_modules), dim=lora.lora_rank,
                      alpha=lora.lora_alpha, dropout=lora.lora_dropout)
