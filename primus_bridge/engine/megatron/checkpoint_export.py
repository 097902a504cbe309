"""`primus_bridge.convert --load CKPT --convert_to_hf`: rebuild the model from a Megatron checkpoint, export it.

Runs on the CPU in one process. A full fine-tune's checkpoint holds all weights. A LoRA run's
checkpoint holds the adapters only (Megatron-Bridge saves PEFT runs that way) and names its base
checkpoint: the base weights are loaded first, the adapters are applied and then loaded on top.
"""

import json
from pathlib import Path

from ...checkpoint_info import MARKER_FILE
from ...config import ConfigError
from .export import export_models
from .layer_spec import resolve_transformer_impl, use_local_spec
from .model import megatron_iteration
from .process_group import single_process_group

SINGLE_RANK = {"tensor_model_parallel_size": 1, "pipeline_model_parallel_size": 1, "context_parallel_size": 1,
               "virtual_pipeline_model_parallel_size": None, "sequence_parallel": False,
               "perform_initialization": False}


def _run_files(iteration: Path) -> tuple[dict, dict]:
    marker_path, config_path = iteration / MARKER_FILE, iteration / "primus_run_config.yaml"
    if not marker_path.is_file() or not config_path.is_file():
        raise ConfigError(f"--load {iteration}: not a checkpoint of a primus-bridge megatron run (no {MARKER_FILE} "
                          "or primus_run_config.yaml); pass the run's checkpointing.save folder")
    from megatron.bridge.training.checkpointing import read_run_config

    return json.loads(marker_path.read_text()), read_run_config(str(iteration / "run_config.yaml"))


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

    common = dist_checkpointing.load_common_state_dict(str(iteration))
    metadata = dist_checkpointing.load_content_metadata(preloaded_state_dict=common)
    sharded = apply_peft_adapter_filter_to_state_dict(_generate_model_state_dict(model, {"metadata": metadata}), peft)
    loaded = dist_checkpointing.load(sharded, str(iteration), TorchDistLoadShardedStrategy())
    missing, _ = model[0].load_state_dict(loaded["model"], strict=False)
    if not any("adapter" in key for key in loaded["model"]):
        raise ConfigError(f"--load {iteration}: no LoRA adapter weights found in this checkpoint")
    del missing


def export_checkpoint(checkpoint: Path, out: Path) -> Path:
    from megatron.bridge.training.checkpointing import _load_model_weights_from_checkpoint
    from megatron.bridge.utils.instantiate_utils import instantiate
    from transformers import AutoTokenizer

    iteration = megatron_iteration(checkpoint, key="--load")
    marker, mb_config = _run_files(iteration)
    impl = resolve_transformer_impl(marker.get("transformer_impl", "auto"))
    tokenizer = AutoTokenizer.from_pretrained(marker["tokenizer"], local_files_only=True)
    with single_process_group():
        model = _single_rank_model(iteration, impl)
        peft = None
        if marker.get("lora"):
            base = megatron_iteration(marker["base_checkpoint"], key="base_checkpoint")
            _load_model_weights_from_checkpoint(str(base), model)
            peft = instantiate(mb_config["peft"])
            model = peft(model, training=False)
            _load_adapters(iteration, model, peft)
        else:
            _load_model_weights_from_checkpoint(str(iteration), model)
        return export_models(model, Path(marker["hf_source"]), Path(out), marker["template"], tokenizer, peft)
