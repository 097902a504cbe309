"""The model the hf engine trains: `AutoModelForCausalLM` (fp32 master weights), optionally wrapped by PEFT LoRA."""

import inspect
from dataclasses import dataclass
from pathlib import Path

import torch

from ...config import ConfigError, PrimusConfig
from ...run.secrets import hf_token
from .distributed import DistEnv
from .liger import apply_liger
from .weights import check_weight_files, refuse_nonfinite_weights


PACKED_BY_POSITION_IDS = {"flash_attention_2", "flash_attention_3", "flex_attention"}
"""Attention kernels that take packed rows as position_ids alone (varlen / block mask built by transformers)."""


@dataclass
class LoadedModel:
    model: torch.nn.Module
    attn_implementation: str
    is_lora: bool
    logits_to_keep: bool
    """The model's forward takes `logits_to_keep` (so the LM head can skip untrained positions)."""
    fused_loss: bool = False
    """The forward computes the loss itself from shifted labels (liger-kernel's fused linear cross-entropy)."""

    @property
    def trainable_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    @property
    def total_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def model_source(cfg: PrimusConfig) -> str:
    """The HF model to start from: an absolute local folder, or a hub id (resolved from the local HF cache)."""
    source = cfg.hf_model_name_or_path
    if not source:
        load = cfg.model.load
        hint = f" (model.load {load} is a Megatron checkpoint: use engine: megatron)" if load else ""
        raise ConfigError("hf_model_name_or_path: the hf engine starts from a HF model; pass "
                          f"--hf_model_name_or_path FOLDER_OR_HUB_ID{hint}")
    local = Path(source).expanduser()
    if local.is_dir():
        return str(local.resolve())
    if source.startswith((".", "/", "~")) or source.count("/") > 1:
        raise ConfigError(f"hf_model_name_or_path: {source} is not a folder; pass a HF model folder or a hub id "
                          "from the local HF cache")
    return source


def attention_implementation(cfg: PrimusConfig, device: torch.device) -> str:
    """`model.attn_implementation`, or for auto: flash-attention 2 on a GPU where it is installed, else sdpa."""
    asked = cfg.model.attn_implementation
    if asked != "auto":
        return asked
    from transformers.utils import is_flash_attn_2_available

    return "flash_attention_2" if device.type == "cuda" and is_flash_attn_2_available() else "sdpa"


def load_causal_lm(source: str, cfg: PrimusConfig, attn: str, dtype: torch.dtype = torch.float32):
    from transformers import AutoModelForCausalLM

    local = Path(source).is_dir()
    check_weight_files(source)
    try:
        return AutoModelForCausalLM.from_pretrained(
            source, dtype=dtype, attn_implementation=attn, trust_remote_code=cfg.model.trust_remote_code,
            local_files_only=True, token=None if local else hf_token())
    except (OSError, ValueError, ImportError) as err:
        raise ConfigError(f"hf_model_name_or_path: cannot load a causal LM from {source!r}: {err}") from None


def lora_config(cfg: PrimusConfig):
    from peft import LoraConfig

    lora = cfg.lora
    return LoraConfig(r=lora.lora_rank, lora_alpha=lora.lora_alpha, lora_dropout=lora.lora_dropout,
                      target_modules=list(lora.lora_target_modules), task_type="CAUSAL_LM")


def _wrap_lora(base, cfg: PrimusConfig, adapter_dir: Path | None):
    from peft import PeftModel, get_peft_model

    try:
        if adapter_dir is not None:
            return PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=True)
        return get_peft_model(base, lora_config(cfg))
    except ValueError as err:
        raise ConfigError(f"lora.lora_target_modules: {err}; use the model's module names "
                          "(Llama: q_proj k_proj v_proj o_proj gate_proj up_proj down_proj)") from None


def frozen_base_dtype(cfg: PrimusConfig, device: torch.device) -> torch.dtype:
    """LoRA under bf16 on a GPU keeps the frozen base in bf16 (as HF + PEFT users do); it gets no
    optimizer state, so fp32 copies would only double its memory. Trained weights stay fp32."""
    from .precision import choose_precision

    if cfg.lora.use_lora and choose_precision(cfg, device).autocast_dtype == torch.bfloat16:
        return torch.bfloat16
    return torch.float32


def build_model(cfg: PrimusConfig, env: DistEnv, resume_weights: Path | None = None) -> LoadedModel:
    """Base model (or the checkpoint's full weights), LoRA when asked, gradient checkpointing when asked."""
    attn = attention_implementation(cfg, env.device)
    is_lora = cfg.lora.use_lora
    source = str(resume_weights) if resume_weights is not None and not is_lora else model_source(cfg)
    model = load_causal_lm(source, cfg, attn, frozen_base_dtype(cfg, env.device))
    if cfg.model.liger_kernel:
        apply_liger(model, env.device)
    if is_lora:
        model = _wrap_lora(model, cfg, resume_weights)
    if cfg.activation_checkpointing.recompute_activations:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    refuse_nonfinite_weights(model.to(env.device), source, resume_weights if is_lora else None)
    return LoadedModel(model, attn, is_lora, takes_logits_to_keep(model), cfg.model.liger_kernel)


def takes_logits_to_keep(model) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters
