"""LoRA on the megatron engine: the config's HF projection names -> Megatron-Bridge PEFT (the name map is
`primus_bridge.models.lora`).

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

from ...checkpoint import latest_checkpoint
from ...config import ConfigError
from ...config.sections.lora import LoraConfig
from ...models.lora import ADAPTER_NAMES, FUSED_LAYERS, LAYER_PROJECTIONS, PROJECTIONS

log = logging.getLogger("primus_bridge")

PEFT_A_INIT = "kaiming"
"""Megatron-Bridge's name for PEFT's A initialisation (kaiming-uniform with a = sqrt(5): |A| <= 1/sqrt(in)); its
default, xavier-normal, starts A about 2.4 times larger for a 4096-wide layer, so the first updates (and, under
gradient clipping, the whole run) would differ from PEFT's. B starts at zero on both."""

SAVED_FUSED_LAYERS = frozenset(layer for layer, names in LAYER_PROJECTIONS.items() if len(names) > 1)
"""The layers (linear_qkv, linear_fc1) an earlier run's checkpoint may adapt as a whole."""


def map_targets(hf_names: list[str]) -> tuple[str, ...]:
    """CanonicalLoRA's target names for `lora.lora_target_modules` (checked by the config), in layer order."""
    chosen = set(hf_names)
    return tuple(ADAPTER_NAMES[name] for name in PROJECTIONS if name in chosen)


def build_peft(lora: LoraConfig, resume: str | Path | None = None):
    """Per-projection adapters (ProjectionLoRA, a CanonicalLoRA) with the run's targets, rank, alpha, dropout.

    `resume`: the save folder a resumed run loads; if its latest checkpoint holds fused adapters, the
    resumed run keeps them (`LoRA` on the fused layers), since its adapter weights have that shape.
    """
    from .projection_lora import ProjectionLoRA

    targets = map_targets(list(lora.lora_target_modules))
    settings = {"dim": lora.lora_rank, "alpha": lora.lora_alpha, "dropout": lora.lora_dropout,
                "lora_A_init_method": PEFT_A_INIT}
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
    return SAVED_FUSED_LAYERS & set(peft.get("target_modules") or ())


def _fused_peft(lora: LoraConfig, resume, fused: frozenset[str], settings: dict):
    from megatron.bridge.peft.lora import LoRA

    chosen = set(lora.lora_target_modules)
    partial = [", ".join(names) for names in LAYER_PROJECTIONS.values() if 0 < len(chosen & set(names)) < len(names)]
    if partial:
        raise ConfigError(f"lora.lora_target_modules: lists part of {' and of '.join(partial)}, but the run resumed "
                          f"from {resume} has one adapter per fused layer ({', '.join(sorted(fused))}), which only "
                          "a whole group can resume; list the whole group, or start a new run in another "
                          "checkpointing.save folder")
    targets = dict.fromkeys(FUSED_LAYERS[name] for name in PROJECTIONS if name in chosen)
    log.warning("resuming %s: its checkpoint has one adapter per fused layer (%s); this run keeps that layout "
                "(new runs train one adapter per projection, as PEFT does)", resume, ", ".join(sorted(fused)))
    return LoRA(target_modules=list(targets), **settings)
