"""The Megatron model provider for a run, and the checks made on it before any GPU work.

The provider (Megatron-Bridge's `GPTModelProvider` subclass for the architecture) comes from the HF
config (AutoBridge, weights not loaded: finetune() loads them from the starting checkpoint) or from a
Megatron checkpoint's saved run config. The layer spec follows `model.transformer_impl`.
"""

from dataclasses import dataclass
from pathlib import Path

from ...checkpoint_info import latest_checkpoint
from ...config import ConfigError, PrimusConfig
from .layer_spec import use_local_spec

OUR_TARGET_PREFIX = "primus_bridge.engine.megatron."


@dataclass
class ModelPlan:
    provider: object
    hf_source: Path
    """HF folder whose config (and tokenizer) the model was made from; used for export."""
    position_limit: int | None


def allow_our_targets() -> None:
    """Saved run configs name our layer spec and dataset provider; Megatron-Bridge only rebuilds allowed targets."""
    from megatron.bridge.utils.instantiate_utils import register_allowed_target_prefix

    register_allowed_target_prefix(OUR_TARGET_PREFIX)


def provider_from_hf(hf_path: Path, transformer_impl: str):
    from megatron.bridge import AutoBridge

    provider = AutoBridge.from_hf_pretrained(str(hf_path)).to_megatron_provider(load_weights=False)
    if transformer_impl == "local":
        use_local_spec(provider)
    return provider


def megatron_iteration(checkpoint: str | Path, key: str = "model.load") -> Path:
    """The iteration folder of a Megatron checkpoint (a save folder, or an iter_* folder itself)."""
    path = Path(checkpoint)
    if not path.exists():
        raise ConfigError(f"{key}: {path} does not exist; pass a Megatron checkpoint folder")
    if (path / "run_config.yaml").is_file():
        return path
    newest = latest_checkpoint(path)
    if newest is None:
        folders = sorted(p for p in path.glob("iter_*") if (p / "run_config.yaml").is_file())
        newest = folders[-1] if folders else None
    if newest is None or not (newest / "run_config.yaml").is_file():
        raise ConfigError(f"{key}: {path} holds no Megatron checkpoint (no iter_*/run_config.yaml); pass the "
                          "folder a Megatron run or `primus_bridge.convert --convert_from_hf` wrote")
    return newest


def provider_from_checkpoint(iteration: Path, transformer_impl: str):
    from megatron.bridge.training.model_load_save import load_model_config

    allow_our_targets()
    provider, _ = load_model_config(str(iteration))
    if transformer_impl == "local":
        use_local_spec(provider)
    return provider


def preflight_errors(cfg: PrimusConfig, provider, position_limit: int | None) -> list[str]:
    """Problems the model's real shape reveals: TP vs heads, KV groups and vocabulary; sequence vs positions.

    The vocabulary matters because the embedding and output layer are split by rows across TP ranks and
    the HF checkpoint's rows are kept as they are (no padding, so the export matches the original).
    """
    tp, errors = cfg.parallelism.tensor_model_parallel_size, []
    heads, groups = provider.num_attention_heads, provider.num_query_groups or provider.num_attention_heads
    for name, count in (("attention heads", heads), ("KV groups", groups)):
        if count % tp:
            errors.append(f"parallelism.tensor_model_parallel_size: {tp} does not divide the model's {count} "
                          f"{name}; use a divisor of {count}")
    if provider.vocab_size % tp:
        errors.append(f"parallelism.tensor_model_parallel_size: {tp} does not divide the model's "
                      f"{provider.vocab_size} vocabulary entries; use a TP size that does, or a checkpoint whose "
                      "vocabulary is padded (e.g. to a multiple of 128)")
    if position_limit and cfg.data.seq_length > position_limit:
        errors.append(f"data.seq_length: {cfg.data.seq_length} is beyond the model's {position_limit} positions; "
                      f"use at most {position_limit}")
    return errors
