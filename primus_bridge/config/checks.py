"""Cross-field checks that no single field can make: all run, all problems reported together."""

import json
import os
from pathlib import Path

from .head_loss import chunked_head_needs
from .schema import PrimusConfig


def _set_by_user(origin: str) -> bool:
    return not (origin.startswith("default") or origin.startswith("recipe"))


def data_parallel_size(cfg: PrimusConfig, world_size: int) -> int:
    p = cfg.parallelism
    model_parallel_size = p.tensor_model_parallel_size * p.pipeline_model_parallel_size * p.context_parallel_size
    return max(world_size // model_parallel_size, 1)


def _check_batch(cfg: PrimusConfig, world_size: int | None) -> list[str]:
    """Without a known world size (not launched yet) only micro batch | global batch is checked."""
    p, t = cfg.parallelism, cfg.training
    model_parallel = p.tensor_model_parallel_size * p.pipeline_model_parallel_size * p.context_parallel_size
    if world_size is None:
        world_size = model_parallel
    if world_size % model_parallel:
        return [f"parallelism: world size {world_size} is not divisible by TP*PP*CP = {model_parallel}; "
                "change the GPU count or the parallel sizes"]
    dp = data_parallel_size(cfg, world_size)
    if t.global_batch_size % (t.micro_batch_size * dp):
        return [f"training.global_batch_size: {t.global_batch_size} is not divisible by micro_batch_size "
                f"({t.micro_batch_size}) x data-parallel size ({dp}); use a multiple of {t.micro_batch_size * dp}"]
    return []


def _hf_config(cfg: PrimusConfig) -> dict:
    """The local HF model's config.json, when the model path is a folder that has one."""
    if not cfg.hf_model_name_or_path:
        return {}
    path = Path(cfg.hf_model_name_or_path) / "config.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def model_shape(cfg: PrimusConfig) -> dict:
    """Heads, KV groups and position limit, from the config or the local HF model, where known."""
    hf = _hf_config(cfg)
    heads = cfg.model.num_attention_heads or hf.get("num_attention_heads")
    return {
        "heads": heads,
        "kv_groups": cfg.model.num_query_groups or hf.get("num_key_value_heads") or heads,
        "max_positions": cfg.model.max_position_embeddings or hf.get("max_position_embeddings"),
    }


def _check_model_fit(cfg: PrimusConfig) -> list[str]:
    shape, tp, errors = model_shape(cfg), cfg.parallelism.tensor_model_parallel_size, []
    for name, count in (("attention heads", shape["heads"]), ("KV groups", shape["kv_groups"])):
        if count and count % tp:
            errors.append(f"parallelism.tensor_model_parallel_size: {tp} does not divide the model's {count} "
                          f"{name}; use a divisor of {count}")
    limit = shape["max_positions"]
    if limit and cfg.data.seq_length > limit:
        errors.append(f"data.seq_length: {cfg.data.seq_length} is beyond the model's {limit} positions; "
                      f"use at most {limit}")
    return errors


def _check_lora(cfg: PrimusConfig, origins: dict[str, str]) -> list[str]:
    if cfg.lora.use_lora:
        return []
    errors = [f"{origins[k]}: {k} is set but lora.use_lora is false; add use_lora: true (or --use_lora) "
              "or remove it"
              for k in sorted(origins) if k.startswith("lora.") and k != "lora.use_lora"
              and _set_by_user(origins[k])]
    if cfg.checkpointing.save_lora_only:
        errors.append("checkpointing.save_lora_only: needs LoRA; set lora.use_lora: true or remove save_lora_only")
    return errors


def _check_parallel_flags(cfg: PrimusConfig) -> list[str]:
    p, errors = cfg.parallelism, []
    if p.sequence_parallel and p.tensor_model_parallel_size == 1:
        errors.append("parallelism.sequence_parallel: needs tensor_model_parallel_size > 1; turn it off or raise TP")
    if p.virtual_pipeline_model_parallel_size and p.pipeline_model_parallel_size == 1:
        errors.append("parallelism.virtual_pipeline_model_parallel_size: needs pipeline_model_parallel_size > 1")
    return errors


def _check_io(cfg: PrimusConfig) -> list[str]:
    errors = []
    if cfg.convert_from_hf and not cfg.hf_model_name_or_path:
        errors.append("convert_from_hf: needs hf_model_name_or_path (flag --hf_model_name_or_path)")
    if cfg.convert_to_hf and not cfg.hf_save_path:
        errors.append("convert_to_hf: needs hf_save_path (flag --hf_save_path)")
    if cfg.precision.fp8 and cfg.engine == "hf":
        errors.append("precision.fp8: the hf engine has no FP8 path; use engine: megatron with TransformerEngine")
    return errors


def _check_fp8_frozen_base(cfg: PrimusConfig) -> list[str]:
    """What the config alone says against precision.fp8_frozen_base (the GPU is checked by the engine)."""
    if not cfg.precision.fp8_frozen_base:
        return []
    key, needs = "precision.fp8_frozen_base", []
    if cfg.engine == "hf":
        needs.append("engine: megatron (the hf engine has no FP8 path)")
    if not cfg.lora.use_lora:
        needs.append("LoRA (lora.use_lora: true): only a frozen base is stored in FP8")
    if cfg.parallelism.tensor_model_parallel_size > 1:
        needs.append("parallelism.tensor_model_parallel_size: 1")
    if cfg.model.transformer_impl == "transformer_engine":
        needs.append("model.transformer_impl: local (with TransformerEngine use precision.fp8 instead)")
    return [f"{key}: needs {need}; change it or set {key}: false" for need in needs]


def _check_head_loss(cfg: PrimusConfig) -> list[str]:
    needs = chunked_head_needs(cfg) if cfg.model.head_loss == "chunked" else []
    if not needs:
        return []
    return [f"model.head_loss: chunked needs {', '.join(needs)}; set head_loss: auto or full otherwise"]


def _check_profiling(cfg: PrimusConfig) -> list[str]:
    p, steps = cfg.profiling, cfg.training.train_iters
    if not p.enabled:
        return []
    if p.end_step < p.start_step:
        return [f"profiling.end_step ({p.end_step}) is before profiling.start_step ({p.start_step}); "
                "set end_step >= start_step"]
    if p.end_step > steps:
        return [f"profiling.end_step ({p.end_step}) is after the last step (training.train_iters = {steps}); "
                "profile earlier steps or train longer"]
    return []


def _env_world_size() -> int | None:
    value = os.environ.get("WORLD_SIZE")
    return int(value) if value and value.isdigit() else None


def cross_field_errors(cfg: PrimusConfig, origins: dict[str, str], world_size: int | None = None) -> list[str]:
    world = world_size if world_size is not None else _env_world_size()
    return [
        *_check_batch(cfg, world),
        *_check_model_fit(cfg),
        *_check_lora(cfg, origins),
        *_check_parallel_flags(cfg),
        *_check_io(cfg),
        *_check_fp8_frozen_base(cfg),
        *_check_head_loss(cfg),
        *_check_profiling(cfg),
    ]
