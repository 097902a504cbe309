"""The Megatron model provider for a run, and the checks made on it before any GPU work.

The provider (Megatron-Bridge's `GPTModelProvider` subclass for the architecture) comes from the HF
config (AutoBridge, weights not loaded: finetune() loads them from the starting checkpoint) or from a
Megatron checkpoint's saved run config. The layer spec follows `model.transformer_impl`; the RoPE is the HF
model's, or a ConfigError (rope.py).
"""

from dataclasses import dataclass
from pathlib import Path

from ...checkpoint import latest_checkpoint
from ...config import ConfigError, PrimusConfig
from ...config.checks import KnownShape, structural_errors
from .layer_spec import use_local_spec
from .rope import checked_hf_rope, checkpoint_rope_errors, read_hf_rope, unsupported_rope, use_hf_rope
from .sources import resolve_hf_model

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
    """The provider for the HF model; its RoPE is checked first (Megatron-Bridge fails on some it cannot map)."""
    from megatron.bridge import AutoBridge

    rope = checked_hf_rope(hf_path)
    provider = AutoBridge.from_hf_pretrained(str(hf_path)).to_megatron_provider(load_weights=False)
    if transformer_impl == "local":
        use_local_spec(provider)
    use_hf_rope(provider, rope)
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
    """The config's structural checks (config/checks.py) on the model's real shape, before any weights are
    loaded; and a checkpoint's RoPE vs its HF model's."""
    heads = provider.num_attention_heads
    shape = KnownShape(heads=heads, kv_groups=provider.num_query_groups or heads, vocab_size=provider.vocab_size,
                       max_positions=position_limit)
    return structural_errors(cfg, shape) + _checkpoint_rope_errors(cfg, provider)


def _checkpoint_rope_errors(cfg: PrimusConfig, provider) -> list[str]:
    """A provider from a checkpoint's saved config must build the RoPE of the HF model the engine pairs it with
    (the one it exports with); a provider made from the HF config got that RoPE in provider_from_hf."""
    hf_name = cfg.hf_model_name_or_path or getattr(provider, "hf_model_id", None)
    if cfg.convert_from_hf or not hf_name:
        return []
    rope = read_hf_rope(resolve_hf_model(hf_name).path)
    return unsupported_rope(rope) + checkpoint_rope_errors(provider, rope)
