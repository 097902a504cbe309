"""Cross-field checks that no single field can make: all run, all problems reported together."""

import json
import os
from dataclasses import dataclass
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


@dataclass(frozen=True)
class KnownShape:
    """What the structural checks need of the model, each None where it is not known yet."""

    heads: int | None = None
    kv_groups: int | None = None
    vocab_size: int | None = None
    max_positions: int | None = None


def known_shape(cfg: PrimusConfig) -> KnownShape:
    """Heads, KV groups, vocabulary and position limit, from the config or the local HF model, where known."""
    hf = _hf_config(cfg)
    heads = cfg.model.num_attention_heads or hf.get("num_attention_heads")
    return KnownShape(heads=heads, kv_groups=cfg.model.num_query_groups or hf.get("num_key_value_heads") or heads,
                      vocab_size=hf.get("vocab_size"),
                      max_positions=cfg.model.max_position_embeddings or hf.get("max_position_embeddings"))


def structural_errors(cfg: PrimusConfig, shape: KnownShape, trains: bool = True) -> list[str]:
    """What the model's shape says against the run: TP vs heads, KV groups and vocabulary; seq_length vs positions.

    Run on the config when it is loaded (shape from the config or a local HF model), and again by the megatron
    engine on the model it builds (a hub id or a checkpoint), before any weights are loaded. The vocabulary
    matters because the embedding and output layer are split by rows across TP ranks and the HF checkpoint's rows
    are kept as they are (no padding, so the export matches the original). `trains=False`: a conversion, which
    reads no data, so data.seq_length is not checked.
    """
    tp, errors = cfg.parallelism.tensor_model_parallel_size, []
    for name, count in (("attention heads", shape.heads), ("KV groups", shape.kv_groups)):
        if count and count % tp:
            errors.append(f"parallelism.tensor_model_parallel_size: {tp} does not divide the model's {count} "
                          f"{name}; use a divisor of {count}")
    if shape.vocab_size and shape.vocab_size % tp:
        errors.append(f"parallelism.tensor_model_parallel_size: {tp} does not divide the model's "
                      f"{shape.vocab_size} vocabulary entries; use a TP size that does, or a checkpoint whose "
                      "vocabulary is padded (e.g. to a multiple of 128)")
    limit = shape.max_positions
    if trains and limit and cfg.data.seq_length > limit:
        errors.append(f"data.seq_length: {cfg.data.seq_length} is beyond the model's {limit} positions; "
                      f"use at most {limit}")
    return errors


def _check_sequence_parallel(cfg: PrimusConfig) -> list[str]:
    """Sequence parallel splits each micro batch's packed stream (micro_batch_size rows of seq_length) over TP."""
    tp, stream = cfg.parallelism.tensor_model_parallel_size, cfg.training.micro_batch_size * cfg.data.seq_length
    if not cfg.parallelism.sequence_parallel or stream % tp == 0:
        return []
    return [f"data.seq_length: sequence parallel splits each packed stream (training.micro_batch_size "
            f"{cfg.training.micro_batch_size} x seq_length {cfg.data.seq_length} = {stream} tokens) over the {tp} "
            f"TP ranks; use a seq_length that makes it a multiple of {tp}"]


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


def _check_cuda_graph(cfg: PrimusConfig) -> list[str]:
    """What the config alone says against model.cuda_graph (the GPU and the layer spec are checked by the engine)."""
    if cfg.model.cuda_graph == "none":
        return []
    key, p, needs = "model.cuda_graph", cfg.parallelism, []
    if cfg.engine == "hf":
        needs.append("engine: megatron (the hf engine runs eagerly)")
    if cfg.model.transformer_impl == "transformer_engine":
        needs.append("model.transformer_impl: local (the graph is built and tested on the local spec)")
    if p.pipeline_model_parallel_size > 1:
        needs.append("parallelism.pipeline_model_parallel_size: 1")
    if p.context_parallel_size > 1:
        needs.append("parallelism.context_parallel_size: 1")
    return [f"{key}: {cfg.model.cuda_graph} needs {need}; change it or set {key}: none" for need in needs]


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


def cross_field_errors(cfg: PrimusConfig, origins: dict[str, str], world_size: int | None = None, *,
                       trains: bool = True) -> list[str]:
    """Every problem across keys. `trains=False` (a conversion) leaves out the batch and sequence-length checks."""
    world = world_size if world_size is not None else _env_world_size()
    return [
        *(_check_batch(cfg, world) if trains else []),
        *structural_errors(cfg, known_shape(cfg), trains=trains),
        *(_check_sequence_parallel(cfg) if trains else []),
        *_check_lora(cfg, origins),
        *_check_parallel_flags(cfg),
        *_check_io(cfg),
        *_check_fp8_frozen_base(cfg),
        *_check_cuda_graph(cfg),
        *_check_head_loss(cfg),
        *_check_profiling(cfg),
    ]
