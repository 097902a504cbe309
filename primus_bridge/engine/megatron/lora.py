"""LoRA targets: the contract's HF module names -> Megatron-Bridge PEFT on Megatron-Core's layer names.

Megatron fuses q/k/v into `linear_qkv` and gate/up into `linear_fc1`. Each listed projection gets its own
rank-r adapter, as in PEFT (`ProjectionLoRA`, a Megatron-Bridge CanonicalLoRA: linear_q, linear_k, linear_v,
linear_fc1_gate, linear_fc1_up, linear_proj, linear_fc2): the same trainable parameters, scaling (alpha / r)
and dropout (one mask per adapter, on its input) as PEFT's LoraLayer, and an exact export to a PEFT adapter.
lora_fast_path.py runs a fused layer's adapters in one matmul.

Runs saved before per-projection adapters existed put one adapter on each fused layer when a whole group
was listed (Megatron-Bridge's `LoRA`); resuming such a run keeps that layout (`build_peft(resume=...)`),
and their export reads the layout from the checkpoint's saved run config.
"""

import logging
from pathlib import Path

import yaml

from ...checkpoint_info import latest_checkpoint
from ...config import ConfigError
from ...config.sections.lora import LoraConfig

log = logging.getLogger("primus_bridge")

HF_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
QKV = ("q_proj", "k_proj", "v_proj")
GATE_UP = ("gate_proj", "up_proj")

MEGATRON_NAMES = {"q_proj": "linear_q", "k_proj": "linear_k", "v_proj": "linear_v", "o_proj": "linear_proj",
                  "gate_proj": "linear_fc1_gate", "up_proj": "linear_fc1_up", "down_proj": "linear_fc2"}
"""CanonicalLoRA's name for each projection's adapter."""
FUSED_NAMES = {"q_proj": "linear_qkv", "k_proj": "linear_qkv", "v_proj": "linear_qkv", "o_proj": "linear_proj",
               "gate_proj": "linear_fc1", "up_proj": "linear_fc1", "down_proj": "linear_fc2"}
"""The layout of earlier runs: one adapter per fused layer (Megatron-Bridge's LoRA)."""
FUSED_LAYERS = frozenset({"linear_qkv", "linear_fc1"})


def _checked(hf_names: list[str]) -> list[str]:
    unknown = [name for name in hf_names if name not in HF_MODULES]
    if unknown:
        raise ConfigError(f"lora.lora_target_modules: unknown module name(s) {', '.join(map(repr, unknown))}; "
                          f"valid names: {', '.join(HF_MODULES)}")
    if not hf_names:
        raise ConfigError(f"lora.lora_target_modules: empty; list some of {', '.join(HF_MODULES)}")
    return hf_names


def map_targets(hf_names: list[str]) -> tuple[str, ...]:
    """CanonicalLoRA's target names for `lora.lora_target_modules`, in layer order; unknown names raise."""
    chosen = set(_checked(hf_names))
    return tuple(MEGATRON_NAMES[name] for name in HF_MODULES if name in chosen)


def build_peft(lora: LoraConfig, resume: str | Path | None = None):
    """Per-projection adapters (ProjectionLoRA, a CanonicalLoRA) with the run's targets, rank, alpha, dropout.

    `resume`: the save folder a resumed run loads; if its latest checkpoint holds fused adapters, the
    resumed run keeps them (`LoRA` on the fused layers), since its adapter weights have that shape.
    """
    from .projection_lora import ProjectionLoRA

    targets = map_targets(list(lora.lora_target_modules))
    settings = {"dim": lora.lora_rank, "alpha": lora.lora_alpha, "dropout": lora.lora_dropout}
    fused = saved_fused_layers(resume) if resume is not None else None
    if fused:
        return _fused_peft(lora, resume, fused, settings)
    return ProjectionLoRA(target_modules=list(targets), **settings)


def saved_fused_layers(save: str | Path) -> frozenset[str]:
    """The fused layers (linear_qkv, linear_fc1) that the latest checkpoint under `save` adapts as a whole."""
    latest = latest_checkpoint(save)
    run_config = latest / "run_config.yaml" if latest is not None else None
    if run_config is None or not run_config.is_file():
        return frozenset()
    peft = (yaml.safe_load(run_config.read_text()) or {}).get("peft") or {}
    if not str(peft.get("_target_", "")).endswith(".lora.LoRA"):
        return frozenset()
    return FUSED_LAYERS & set(peft.get("target_modules") or ())


def _fused_peft(lora: LoraConfig, resume, fused: frozenset[str], settings: dict):
    from megatron.bridge.peft.lora import LoRA

    chosen = set(lora.lora_target_modules)
    partial = [", ".join(group) for group in (QKV, GATE_UP) if 0 < len(chosen & set(group)) < len(group)]
    if partial:
        raise ConfigError(f"lora.lora_target_modules: lists part of {' and of '.join(partial)}, but the run resumed "
                          f"from {resume} has one adapter per fused layer ({', '.join(sorted(fused))}), which only "
                          "a whole group can resume; list the whole group, or start a new run in another "
                          "checkpointing.save folder")
    targets = dict.fromkeys(FUSED_NAMES[name] for name in HF_MODULES if name in chosen)
    log.warning("resuming %s: its checkpoint has one adapter per fused layer (%s); this run keeps that layout "
                "(new runs train one adapter per projection, as PEFT does)", resume, ", ".join(sorted(fused)))
    return LoRA(target_modules=list(targets), **settings)
