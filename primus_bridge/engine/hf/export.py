"""Checkpoint -> HF model folder: the merged model (LoRA folded in) plus, for LoRA, the PEFT adapter in adapter/.

The export carries the tokenizer and a generation_config whose eos_token_id is the end-of-turn
token of the prompt template used in training, so `generate()` stops where the training data stopped.
It is written in the dtype the base model was published in, into a temporary folder renamed at the end.
"""

import logging
from pathlib import Path

import torch
import yaml

from ...checkpoint_info import MARKER_FILE, latest_checkpoint
from ...config import ConfigError, PrimusConfig
from ...run.outputs import check_export_dir
from ...utils.atomic import atomic_dir
from .checkpoint import CheckpointMeta
from .model import load_causal_lm

log = logging.getLogger("primus_bridge")

ADAPTER_DIR = "adapter"


def resolve_checkpoint(path: str | Path) -> Path:
    """An iteration folder: `path` itself, or the newest complete one below it."""
    checkpoint = latest_checkpoint(path)
    if checkpoint is None or not (checkpoint / MARKER_FILE).is_file():
        raise ConfigError(f"model.load: {path} holds no complete checkpoint (no {MARKER_FILE} / "
                          "latest_checkpointed_iteration.txt); pass a checkpoint folder written by a training run")
    return checkpoint


def run_config(checkpoint: Path) -> PrimusConfig:
    return PrimusConfig.model_validate(yaml.safe_load((checkpoint / "run_config.yaml").read_text()))


def published_dtype(base_model: str) -> torch.dtype:
    """The dtype in the base model's config.json (float32 when it names none or cannot be read)."""
    from transformers import AutoConfig

    try:
        dtype = AutoConfig.from_pretrained(base_model, local_files_only=True).dtype
    except (OSError, ValueError):
        return torch.float32
    return dtype if isinstance(dtype, torch.dtype) else torch.float32


def _trained_model(checkpoint: Path, meta: CheckpointMeta, cfg: PrimusConfig, out: Path):
    """The trained weights as a plain transformers model; for LoRA the adapter is also saved to out/adapter."""
    if not meta.lora:
        return load_causal_lm(str(checkpoint / "model"), cfg, "sdpa")
    from peft import PeftModel

    base = load_causal_lm(meta.base_model, cfg, "sdpa")
    peft_model = PeftModel.from_pretrained(base, str(checkpoint / "model"))
    peft_model.save_pretrained(out / ADAPTER_DIR)
    return peft_model.merge_and_unload()


def _generation_config(model, tokenizer, meta: CheckpointMeta):
    from transformers import GenerationConfig

    config = GenerationConfig.from_model_config(model.config)
    config.eos_token_id = meta.eos_token_id if meta.eos_token_id is not None else tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else config.pad_token_id
    config.bos_token_id = tokenizer.bos_token_id
    return config


def export_checkpoint(checkpoint: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """Write the HF export of `checkpoint` to `out` (refused when `out` is non-empty, unless overwrite)."""
    from transformers import AutoTokenizer

    checkpoint, out = resolve_checkpoint(checkpoint), check_export_dir(out, overwrite)
    meta, cfg = CheckpointMeta.read(checkpoint), run_config(checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint / "tokenizer"), local_files_only=True)
    with atomic_dir(out, replace=overwrite) as tmp:
        model = _trained_model(checkpoint, meta, cfg, tmp)
        model.to(published_dtype(meta.base_model))
        model.generation_config = _generation_config(model, tokenizer, meta)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    log.info("export: %s -> %s (%s%s)", checkpoint, out, "merged LoRA" if meta.lora else "full model",
             f", adapter in {out / ADAPTER_DIR}" if meta.lora else "")
    return out
