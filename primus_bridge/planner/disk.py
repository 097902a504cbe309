"""Disk a run writes: one checkpoint and the HF export, from the model shape (before anything is loaded).

Bytes per saved parameter:
  hf engine        model 4 (fp32 master weights) + AdamW m and v 8                  = 12
  megatron engine  model 2 (bf16 / fp16; 4 in fp32) + fp32 master, m and v 12      = 14 (16)
A LoRA checkpoint holds the adapters only (both engines), at the same rates per adapter parameter.
The HF export is the merged model in the dtype its config.json names (2 bytes when it names none)
plus, for LoRA, the adapter in fp32. Tokenizer and small files are covered by a 5% margin.
"""

import json
from pathlib import Path

from ..config import PrimusConfig
from ..models.lora import LoraSpec
from ..models.shape import ModelShape
from .source import find_model_shape

MARGIN = 1.05
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


def lora_params(shape: ModelShape, cfg: PrimusConfig) -> int:
    """Adapter parameters of the run: r x (in + out) per adapted projection per layer."""
    return LoraSpec(cfg.lora.lora_rank, frozenset(cfg.lora.lora_target_modules)).params(shape)


def _saved_params(cfg: PrimusConfig, shape: ModelShape) -> int:
    if cfg.lora.use_lora:
        return lora_params(shape, cfg)
    return shape.total_params()


def checkpoint_bytes(cfg: PrimusConfig, shape: ModelShape, engine: str) -> int:
    """One checkpoint of this run."""
    if engine == "megatron":
        half = cfg.precision.bf16 or cfg.precision.fp16
        per_param = (2 if half else 4) + 12
    else:
        per_param = 12
    return int(_saved_params(cfg, shape) * per_param * MARGIN)


def _published_bytes_per_param(cfg: PrimusConfig) -> int:
    config = Path(cfg.hf_model_name_or_path or "") / "config.json"
    try:
        data = json.loads(config.read_text()) if config.is_file() else {}
    except (OSError, ValueError):
        data = {}
    return DTYPE_BYTES.get(str(data.get("dtype") or data.get("torch_dtype") or "bfloat16"), 2)


def export_bytes(cfg: PrimusConfig, shape: ModelShape) -> int:
    """The HF export: merged model (+ the fp32 adapter for LoRA)."""
    merged = shape.total_params() * _published_bytes_per_param(cfg)
    adapter = lora_params(shape, cfg) * 4 if cfg.lora.use_lora else 0
    return int((merged + adapter) * MARGIN)


def output_sizes(cfg: PrimusConfig, engine: str) -> tuple[int, int] | None:
    """(one checkpoint, the export) in bytes, or None when the model's shape is not known before loading.

    ValueError when the model's config.json cannot be read as a supported shape.
    """
    source = find_model_shape(cfg)
    if source is None:
        return None
    return checkpoint_bytes(cfg, source.shape, engine), export_bytes(cfg, source.shape)
