"""LoRA targets: the HF projection names a config lists, the Megatron names they map to, and the adapters' shape.

`lora.lora_target_modules` lists HF projection names (PEFT's `target_modules` on the hf engine). Megatron-Core
fuses q/k/v into `linear_qkv` and gate/up into `linear_fc1`; Megatron-Bridge's CanonicalLoRA gives each
projection its own adapter inside them (linear_q ... linear_fc2), as PEFT does. Runs saved before
per-projection adapters put one adapter on each fused layer (Megatron-Bridge's `LoRA`): `FUSED_LAYERS`.
"""

import difflib
from dataclasses import dataclass
from typing import Literal

from .shape import ModelShape

TARGETS_KEY = "lora.lora_target_modules"

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""HF projection names, in layer order."""

ADAPTER_NAMES = {"q_proj": "linear_q", "k_proj": "linear_k", "v_proj": "linear_v", "o_proj": "linear_proj",
                 "gate_proj": "linear_fc1_gate", "up_proj": "linear_fc1_up", "down_proj": "linear_fc2"}
"""CanonicalLoRA's name for each projection's adapter."""

FUSED_LAYERS = {"q_proj": "linear_qkv", "k_proj": "linear_qkv", "v_proj": "linear_qkv", "o_proj": "linear_proj",
                "gate_proj": "linear_fc1", "up_proj": "linear_fc1", "down_proj": "linear_fc2"}
"""The Megatron-Core linear layer each projection lives in."""

LAYER_PROJECTIONS = {layer: tuple(name for name in PROJECTIONS if FUSED_LAYERS[name] == layer)
                     for layer in dict.fromkeys(FUSED_LAYERS.values())}
"""Megatron-Core linear layer -> the projections it holds (linear_qkv: q, k, v; linear_fc1: gate, up)."""


def _suggestion(name: str) -> str:
    """The projection name(s) nearest to `name`: an HF name, CanonicalLoRA's or a fused layer's ('linear_qkv')."""
    meant = {**{p: p for p in PROJECTIONS}, **{a: p for p, a in ADAPTER_NAMES.items()},
             **{layer: ", ".join(names) for layer, names in LAYER_PROJECTIONS.items()}}
    near = difflib.get_close_matches(name, list(meant), n=1, cutoff=0.6)
    return f"did you mean {meant[near[0]]}? " if near else ""


def target_errors(names: list[str]) -> list[str]:
    """Problems with a `lora.lora_target_modules` list: empty, or unknown names (each with the nearest valid one)."""
    if not names:
        return [f"{TARGETS_KEY}: empty; list some of {', '.join(PROJECTIONS)}"]
    return [f"{TARGETS_KEY}: unknown module name {name!r}; {_suggestion(name)}valid names: {', '.join(PROJECTIONS)}"
            for name in dict.fromkeys(names) if name not in ADAPTER_NAMES]


AdapterLayout = Literal["per_projection", "fused"]


@dataclass(frozen=True)
class LoraSpec:
    """The adapters of a run, for counting parameters and FLOPs."""

    rank: int
    targets: frozenset[str]
    """HF projection names carrying an adapter (q_proj ... down_proj)."""
    dropout: float = 0.0
    layout: AdapterLayout = "per_projection"
    """per_projection: one adapter per projection, as PEFT (what both engines train); fused: one adapter per
    Megatron layer (linear_qkv, linear_fc1), as runs saved before per-projection adapters."""

    def __post_init__(self):
        errors = target_errors(sorted(self.targets))
        if errors:
            raise ValueError("; ".join(errors))

    @property
    def modules(self) -> frozenset[str]:
        """The Megatron layers those projections live in."""
        return frozenset(FUSED_LAYERS[name] for name in self.targets)

    def adapters_on(self, module: str) -> int:
        """Adapters reading the input of Megatron layer `module`."""
        if self.layout == "fused":
            return int(module in self.modules)
        return sum(1 for name in LAYER_PROJECTIONS[module] if name in self.targets)

    def adapter_dims(self, shape: ModelShape) -> list[tuple[int, int]]:
        """(in, out) of each adapter of one layer (A is rank x in, B out x rank)."""
        dims = shape.linear_dims()
        if self.layout == "per_projection":
            return [dims[name] for name in PROJECTIONS if name in self.targets]
        return [(dims[names[0]][0], sum(dims[name][1] for name in names))
                for module, names in LAYER_PROJECTIONS.items() if module in self.modules]

    def params(self, shape: ModelShape) -> int:
        """Adapter weights of the whole model: r x (in + out) per adapter per layer."""
        return shape.num_layers * sum(self.rank * (inp + out) for inp, out in self.adapter_dims(shape))

