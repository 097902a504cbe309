"""Checkpoint -> HF model folder: the merged model (LoRA folded in) plus, for LoRA, the PEFT adapter in adapter/.

The export carries the tokenizer and a generation_config whose eos_token_id is the end-of-turn
token of the prompt template used in training, so `generate()` stops where the training data stopped.
It is written in the dtype the base model was published in, into a temporary folder renamed at the end;
its last file, primus_bridge_export.json, names the checkpoint it was made from, so a rerun of a finished
run (a requeue) keeps the export instead of failing on the existing folder.
"""

import logging
from pathlib import Path

import torch
import yaml

from ...checkpoint import MARKER_FILE, Marker, export_marker, is_export_of, latest_checkpoint, read_marker, write_marker
from ...checkpoint.store import no_space_error, out_of_space
from ...config import ConfigError, PrimusConfig
from ...run.outputs import check_export_dir, remove_stale_export_temporaries
from ...utils.atomic import atomic_dir
from .checkpoint import CONFIG_FILE
from .model import load_causal_lm

log = logging.getLogger("primus_bridge")

ADAPTER_DIR = "adapter"


def resolve_checkpoint(path: str | Path) -> tuple[Path, Marker]:
    """An iteration folder (`path` itself, or the newest complete one below it) and its marker."""
    checkpoint = latest_checkpoint(path)
    marker = read_marker(checkpoint) if checkpoint is not None and (checkpoint / MARKER_FILE).is_file() else None
    if marker is None:
        raise ConfigError(f"model.load: {path} holds no complete checkpoint (no {MARKER_FILE} / "
                          "latest_checkpointed_iteration.txt); pass a checkpoint folder written by a training run")
    return checkpoint, marker


def run_config(checkpoint: Path, marker: Marker) -> PrimusConfig:
    return PrimusConfig.model_validate(yaml.safe_load((checkpoint / (marker.config_file or CONFIG_FILE)).read_text()))


def published_dtype(base_model: str) -> torch.dtype:
    """The dtype in the base model's config.json (float32 when it names none or cannot be read)."""
    from transformers import AutoConfig

    try:
        dtype = AutoConfig.from_pretrained(base_model, local_files_only=True).dtype
    except (OSError, ValueError):
        return torch.float32
    return dtype if isinstance(dtype, torch.dtype) else torch.float32


def _trained_model(checkpoint: Path, meta: Marker, cfg: PrimusConfig, out: Path):
    """The trained weights as a plain transformers model; for LoRA the adapter is also saved to out/adapter."""
    if not meta.lora:
        return load_causal_lm(str(checkpoint / "model"), cfg, "sdpa")
    from peft import PeftModel

    base = load_causal_lm(meta.base_model, cfg, "sdpa")
    peft_model = PeftModel.from_pretrained(base, str(checkpoint / "model"))
    peft_model.save_pretrained(out / ADAPTER_DIR)
    return peft_model.merge_and_unload()


def _generation_config(model, tokenizer, meta: Marker):
    from transformers import GenerationConfig

    config = GenerationConfig.from_model_config(model.config)
    config.eos_token_id = meta.eos_token_id if meta.eos_token_id is not None else tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else config.pad_token_id
    config.bos_token_id = tokenizer.bos_token_id
    return config


def export_checkpoint(checkpoint: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """Write the HF export of `checkpoint` to `out`; an existing export of the same checkpoint is kept as it is.

    A non-empty `out` is refused unless it is an export of the same run (or `overwrite`); it is replaced whole.
    """
    from transformers import AutoTokenizer

    checkpoint, meta = resolve_checkpoint(checkpoint)
    remove_stale_export_temporaries(out)
    if is_export_of(out, checkpoint):
        log.info("export: %s already holds the export of %s; keeping it", out, checkpoint)
        return Path(out)
    out = check_export_dir(out, overwrite, checkpoint=checkpoint)
    cfg = run_config(checkpoint, meta)
    tokenizer = AutoTokenizer.from_pretrained(meta.tokenizer_path(checkpoint), local_files_only=True)
    try:
        with atomic_dir(out, replace=True) as tmp:
            model = _trained_model(checkpoint, meta, cfg, tmp)
            model.to(published_dtype(meta.base_model))
            model.generation_config = _generation_config(model, tokenizer, meta)
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            write_marker(tmp, export_marker(checkpoint, meta.step, meta, "hf"))
    except Exception as err:
        if out_of_space(err):
            raise no_space_error("hf_save_path", f"the export of {checkpoint} to {out}", err) from err
        raise
    log.info("export: %s -> %s (%s%s)", checkpoint, out, "merged LoRA" if meta.lora else "full model",
             f", adapter in {out / ADAPTER_DIR}" if meta.lora else "")
    return out
