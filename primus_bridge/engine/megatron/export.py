"""Export Megatron models as HF models: merged weights (+ a PEFT adapter folder for LoRA runs).

The exported folder is self-contained: weights and config from Megatron-Bridge's
`save_hf_pretrained`, the tokenizer the run trained with, and a generation config whose EOS is the
token that ends a reply in the run's prompt template. A LoRA run also gets `<out>/adapter`, which
`peft.PeftModel.from_pretrained(base, <out>/adapter)` loads (`save_hf_adapter`): per-projection adapters
are written under PEFT's names (q_proj.lora_A ...), adapters of fused layers from earlier runs split into
the projections (exact: each projection gets A and its rows of B).
All ranks call `export_models` (the weight gathering is collective); rank 0 writes and publishes.

The merged weights: Megatron-Bridge merges a fused layer's per-projection adapters only when every
projection of the layer has one; the compat entry `listed_projection_merge` (compat/listed_projection_merge.py,
applied by prepare_megatron) merges those present and leaves the others as they are (q_proj and v_proj
listed, say).
"""

import logging
import shutil
from pathlib import Path

import torch.distributed as dist

from ...checkpoint.store import no_space_error, out_of_space
from ...config import PrimusConfig
from ...utils.atomic import fsync_tree
from .callbacks import is_rank0

log = logging.getLogger("primus_bridge")

ADAPTER_SUBDIR = "adapter"


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def training_template(cfg: PrimusConfig, tokenizer) -> str:
    """The prompt template the data pipeline uses for this run's data (as it decides it)."""
    from ...data.resolve import run_template

    return run_template(cfg, tokenizer).name


def template_stop_token_id(template_name: str | None, tokenizer) -> int:
    """The token that closes each reply in the template (the last token of a rendered reply).

    Without a template (a checkpoint imported from HF, never trained here) it is the tokenizer's EOS.
    """
    from ...data.templates import get_template, reply_closing_token_id

    if template_name is None:
        return tokenizer.eos_token_id
    return reply_closing_token_id(get_template(template_name, tokenizer), tokenizer)


def write_generation_config(out: Path, template_name: str | None, tokenizer) -> None:
    from transformers import GenerationConfig

    try:
        generation = GenerationConfig.from_pretrained(out)
    except OSError:
        generation = GenerationConfig()
    stop = template_stop_token_id(template_name, tokenizer)
    ends = [stop] + ([tokenizer.eos_token_id] if tokenizer.eos_token_id not in (None, stop) else [])
    generation.eos_token_id = ends if len(ends) > 1 else stop
    generation.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop
    generation.bos_token_id = tokenizer.bos_token_id
    generation.save_pretrained(out)


def _staging(out: Path) -> Path:
    return out.with_name(f".{out.name}.exporting")


def _publish(staging: Path, out: Path) -> None:
    fsync_tree(staging)
    if out.exists():
        old = out.with_name(f".{out.name}.replaced")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(out)


def export_models(models: list, hf_source: Path, out: Path, template_name: str | None, tokenizer,
                  peft=None) -> Path:
    """Collective: merged HF model (+ PEFT adapter when `peft`) to `out`, replaced atomically; a full filesystem
    is reported as such, with the staging folder removed and `out` as it was."""
    out, staging = Path(out), _staging(Path(out))
    if is_rank0():
        shutil.rmtree(staging, ignore_errors=True)
    _barrier()
    try:
        _write_export(models, hf_source, staging, out, template_name, tokenizer, peft)
    except (OSError, RuntimeError) as err:
        if not out_of_space(err):
            raise
        shutil.rmtree(staging, ignore_errors=True)
        raise no_space_error("hf_save_path", f"the export to {out}", err) from err
    _barrier()
    return out


def _write_export(models: list, hf_source: Path, staging: Path, out: Path, template_name: str | None, tokenizer,
                  peft) -> None:
    from megatron.bridge import AutoBridge

    bridge = AutoBridge.from_hf_pretrained(str(hf_source))
    bridge.save_hf_pretrained(models, staging, show_progress=False, source_path=str(hf_source))
    if peft is not None:
        bridge.save_hf_adapter(models, staging / ADAPTER_SUBDIR, peft_config=peft,
                               base_model_name_or_path=str(hf_source), show_progress=False)
    if is_rank0():
        tokenizer.save_pretrained(staging)
        write_generation_config(staging, template_name, tokenizer)
        _publish(staging, out)
        log.info("exported the HF model%s to %s", " and its PEFT adapter" if peft else "", out)
