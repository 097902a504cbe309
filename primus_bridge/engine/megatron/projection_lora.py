"""`ProjectionLoRA`: Megatron-Bridge's CanonicalLoRA (one adapter per projection) without empty slots.

CanonicalLoRA wraps `linear_qkv` and `linear_fc1` with a ModuleDict holding an adapter for each listed
projection and None for the others. Its own forward calls every slot, and the walks over the model (freezing
after the transform, checkpoint state dicts) visit every slot, so listing part of a group (q_proj and v_proj,
say) fails there. Here the unlisted slots are removed; lora_fast_path.group_forward runs the slots present.
And a saved run config gives `canonical_mapping` back as a plain dict, which CanonicalLoRA cannot rebuild
into (it adds to a defaultdict); here it becomes one again, so checkpoint export can re-create the PEFT.

Imported after Megatron-Bridge (runtime.prepare_megatron); saved run configs name this class.
"""

from collections import defaultdict
from dataclasses import dataclass

from megatron.bridge.peft.canonical_lora import CanonicalLoRA
from torch import nn


@dataclass
class ProjectionLoRA(CanonicalLoRA):
    """CanonicalLoRA whose fused-layer wrappers hold only the listed projections' adapters."""

    def __post_init__(self) -> None:
        self.canonical_mapping = defaultdict(set, self.canonical_mapping or {})
        super().__post_init__()

    def transform(self, m: nn.Module, name: str | None = None, prefix: str | None = None) -> nn.Module:
        module = super().transform(m, name, prefix)
        slots = getattr(module, "adapter", None)
        if isinstance(slots, nn.ModuleDict):
            for key in [key for key, adapter in slots.items() if adapter is None]:
                del slots[key]
        return module
