"""`primus_bridge.convert --load CKPT --convert_to_hf`: rebuild the model from a Megatron checkpoint, export it.

Runs on the CPU in one process. A full fine-tune's checkpoint holds all weights. A LoRA run's
checkpoint holds the adapters only (Megatron-Bridge saves PEFT runs that way) and names its base
checkpoint: the base weights are loaded first, the adapters are applied and then loaded on top. The adapters
are re-created from the checkpoint's saved run config: one per projection, or, in a run saved before
per-projection adapters, one per fused layer (both export exactly).
A checkpoint of one of our runs says all this in its marker; one imported from HF (no marker) names its
HF model in Megatron-Bridge's saved run config, which `read_marker` reads for it.
"""

from dataclasses import dataclass
from pathlib import Path

from ...checkpoint import MARKER_FILE, read_marker
from ...config import ConfigError
from .export import export_models
from .layer_spec import resolve_transformer_impl, use_local_spec
from .model import megatron_iteration
from .process_group import single_process_group

SINGLE_RANK = {"tensor_model_parallel_size": 1, "pipeline_model_parallel_size": 1, "context_parallel_size": 1,
               "virtual_pipeline_model_parallel_size": None, "sequence_parallel": False,
               "perform_initialization": False}


@dataclass(frozen=True)
class ExportPlan:
    hf_source: Path
    tokenizer: str
    template: str | None
    transformer_impl: str
    lora: bool = False
    base_checkpoint: str | None = None


def export_plan(iteration: Path) -> ExportPlan:
    marker = read_marker(iteration)
    if marker is None or not marker.base_model:
        raise ConfigError(f"--load {iteration}: the checkpoint names no HF model (no {MARKER_FILE}, no "
                          "model.hf_model_id in run_config.yaml); it cannot be exported to HF")
    return ExportPlan(Path(marker.base_model), marker.tokenizer_path(iteration), marker.template,
                      marker.transformer_impl or "auto", marker.lora, marker.base_checkpoint)


def _single_rank_model(iteration: Path, transformer_impl: str) -> list:
    from megatron.bridge.training.model_load_save import load_model_config

    provider, _ = load_model_config(str(iteration))
    for name, value in SINGLE_RANK.items():
        setattr(provider, name, value)
    if transformer_impl == "local":
        use_local_spec(provider)
    provider.finalize()
    return provider.provide_distributed_model(wrap_with_ddp=False, use_cpu_initialization=True)


def _load_adapters(iteration: Path, model: list, peft) -> None:
    """Load only the adapter tensors of a PEFT checkpoint into a model that already holds its base weights."""
    from megatron.bridge.training.checkpointing import (
        _generate_model_state_dict,
        apply_peft_adapter_filter_to_state_dict,
    )
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.strategies.torch import TorchDistLoadShardedStrategy

    from megatron.core.utils import unwrap_model

    modules = unwrap_model(model)
    common = dist_checkpointing.load_common_state_dict(str(iteration))
    metadata = dist_checkpointing.load_content_metadata(preloaded_state_dict=common)
    sharded = apply_peft_adapter_filter_to_state_dict(_generate_model_state_dict(modules, {"metadata": metadata}), peft)
    loaded = dist_checkpointing.load(sharded, str(iteration), TorchDistLoadShardedStrategy())
    if not any(".adapter." in key for key in loaded["model"]):
        raise ConfigError(f"--load {iteration}: no LoRA adapter weights found in this checkpoint")
    missing, unexpected = modules[0].load_state_dict(loaded["model"], strict=False)
    missing_adapters = [k for k in missing if ".adapter." in k and not k.endswith("_extra_state")]
    if unexpected or missing_adapters:
        raise RuntimeError(f"--load {iteration}: adapter weights do not fit the model "
                           f"(unexpected: {unexpected[:3]}, missing adapters: {missing_adapters[:3]})")


def _load_weights(model: list, iteration: Path, plan: ExportPlan, mb_config: dict):
    """The model with its trained weights; and the PEFT config for LoRA runs (else None)."""
    from megatron.bridge.training.checkpointing import _load_model_weights_from_checkpoint
    from megatron.bridge.utils.instantiate_utils import instantiate

    if not plan.lora:
        _load_model_weights_from_checkpoint(str(iteration), model)
        return model, None
    base = megatron_iteration(plan.base_checkpoint, key="base_checkpoint")
    _load_model_weights_from_checkpoint(str(base), model)
    peft = instantiate(mb_config["peft"])
    model = peft(model, training=False)
    _load_adapters(iteration, model, peft)
    return model, peft


def export_checkpoint(checkpoint: Path, out: Path) -> Path:
    from megatron.bridge.training.checkpointing import read_run_config
    from transformers import AutoTokenizer

    iteration = megatron_iteration(checkpoint, key="--load")
    mb_config = read_run_config(str(iteration / "run_config.yaml"))
    plan = export_plan(iteration)
    tokenizer = AutoTokenizer.from_pretrained(plan.tokenizer, local_files_only=True)
    with single_process_group():
        model = _single_rank_model(iteration, resolve_transformer_impl(plan.transformer_impl))
        model, peft = _load_weights(model, iteration, plan, mb_config)
        return export_models(model, plan.hf_source, Path(out), plan.template, tokenizer, peft)
