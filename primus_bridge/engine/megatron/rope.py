"""The HF model's RoPE on Megatron-Core, exactly, or a ConfigError before any GPU work.

An HF config.json names its RoPE variant in `rope_scaling` (`rope_parameters` in files transformers 5 saves);
transformers fills in the defaults (modeling_rope_utils). Megatron-Bridge maps it onto the model provider, but
not all of it reaches Megatron-Core the way HF defines it:

- llama3: Megatron-Core's `RotaryEmbedding` gets only the factor; `_apply_scaling` then uses its defaults for
  low_freq_factor, high_freq_factor and original_max_position_embeddings (Llama 3.1's 1, 4 and 8192). Other
  values are applied by `use_llama3_frequencies`, a Megatron-Bridge pre-wrap hook that recomputes the model's
  frequencies with that same `_apply_scaling`, given all four.
- yarn: Megatron-Bridge copies the keys the config has; HF's defaults for absent ones (beta_fast 32,
  beta_slow 1, truncate true) stay unset, so Megatron-Core fails (no beta) or leaves the correction range
  unrounded (`yarn_correction_range_round_to_int`). All are set here. HF's attention factor is Megatron-Core's
  concentration factor when computed from factor, mscale and mscale_all_dim; an explicit `attention_factor`
  Megatron-Core cannot take.
- linear: Megatron-Core divides the positions (`seq_len_interpolation_factor`) where HF divides the
  frequencies: the same angles up to float rounding. Megatron-Bridge maps it for Llama only; set here for all.
- any other type (dynamic, longrope, ...): Megatron-Core has none of them.

Applied to the architectures the engine fine-tunes (ROPE_ARCHITECTURES); other Megatron-Bridge models keep their
bridge's own mapping (some have their own RoPE: multimodal, MLA, per-layer).
"""

import functools
import inspect
import json
from dataclasses import dataclass
from pathlib import Path

from ...config import ConfigError

ROPE_ARCHITECTURES = frozenset({"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"})
SUPPORTED_TYPES = ("default", "linear", "llama3", "yarn")
LLAMA3_SUB_PARAMETERS = ("low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
YARN_FIELDS = ("yarn_rotary_scaling_factor", "yarn_original_max_position_embeddings", "yarn_beta_fast",
               "yarn_beta_slow", "yarn_mscale", "yarn_mscale_all_dim", "yarn_correction_range_round_to_int")
HF_ENGINE_FIX = "use engine: hf (transformers runs the model's own RoPE) or a model without it"


@dataclass(frozen=True)
class HFRope:
    """An HF model's RoPE as transformers reads it, and where its config.json states it."""

    folder: Path
    architectures: tuple[str, ...]
    params: dict
    """transformers' standardized `rope_parameters` (rope_type, rope_theta and the type's keys with HF's defaults)."""
    key: str
    """The config.json key holding them: rope_scaling or rope_parameters."""
    type_key: str
    """The key naming the type there: rope_type or (older files) type."""
    max_position_embeddings: int | None

    @property
    def rope_type(self) -> str:
        return self.params.get("rope_type", "default")

    @property
    def applies(self) -> bool:
        """Whether the engine maps this model's RoPE itself (see ROPE_ARCHITECTURES)."""
        return bool(ROPE_ARCHITECTURES.intersection(self.architectures))

    def setting(self, *names: str) -> str:
        """`hf_model_name_or_path config.json: rope_scaling.factor=4.0 (<folder>)`, for error messages."""
        stated = ", ".join(f"{self.key}.{self.type_key if name == 'rope_type' else name}={self.params.get(name)!r}"
                           for name in names)
        return f"hf_model_name_or_path config.json: {stated} ({self.folder})"


def read_hf_rope(folder: Path) -> HFRope:
    from transformers import AutoConfig

    raw = json.loads((Path(folder) / "config.json").read_text())
    params = getattr(AutoConfig.from_pretrained(str(folder), local_files_only=True), "rope_parameters", None) or {}
    key = "rope_scaling" if raw.get("rope_scaling") else "rope_parameters"
    stated = raw.get(key) or {}
    return HFRope(folder=Path(folder), architectures=tuple(raw.get("architectures") or ()), params=dict(params),
                  key=key, type_key="type" if "type" in stated and "rope_type" not in stated else "rope_type",
                  max_position_embeddings=raw.get("max_position_embeddings"))


def megatron_llama3_defaults() -> dict:
    """The llama3 sub-parameters Megatron-Core applies when GPTModel passes only the factor."""
    from megatron.core.models.common.embeddings.rotary_pos_embedding import RotaryEmbedding

    signature = inspect.signature(RotaryEmbedding._apply_scaling).parameters
    return {name: signature[name].default for name in LLAMA3_SUB_PARAMETERS}


def _yarn_factor(rope: HFRope) -> float:
    """HF's YaRN factor: the stated one, else max_position_embeddings / original_max_position_embeddings."""
    factor = rope.params.get("factor")
    if factor is None:
        return rope.max_position_embeddings / rope.params["original_max_position_embeddings"]
    return factor


def _yarn_mscales(rope: HFRope) -> tuple[float | None, float | None]:
    """HF uses mscale/mscale_all_dim only when both are set and non-zero, else the factor's default; Megatron-Core
    does the same when both are None."""
    mscale, mscale_all_dim = rope.params.get("mscale"), rope.params.get("mscale_all_dim")
    return (mscale, mscale_all_dim) if mscale and mscale_all_dim else (None, None)


def _yarn_settings(rope: HFRope) -> dict:
    mscale, mscale_all_dim = _yarn_mscales(rope)
    return {
        "position_embedding_type": "yarn",
        "yarn_rotary_scaling_factor": _yarn_factor(rope),
        "yarn_original_max_position_embeddings": rope.params["original_max_position_embeddings"],
        "yarn_beta_fast": rope.params.get("beta_fast") or 32,
        "yarn_beta_slow": rope.params.get("beta_slow") or 1,
        "yarn_mscale": mscale,
        "yarn_mscale_all_dim": mscale_all_dim,
        "yarn_correction_range_round_to_int": rope.params.get("truncate", True),
    }


def megatron_rope_settings(rope: HFRope) -> dict:
    """The provider fields (Megatron-Core's RoPE settings) that reproduce the HF model's RoPE."""
    settings = {"rotary_base": rope.params["rope_theta"], "position_embedding_type": "rope", "rope_scaling": False,
                "seq_len_interpolation_factor": None, **dict.fromkeys(YARN_FIELDS)}
    if rope.rope_type == "llama3":
        settings.update(rope_scaling=True, rope_scaling_factor=rope.params["factor"])
    elif rope.rope_type == "linear":
        settings["seq_len_interpolation_factor"] = rope.params["factor"]
    elif rope.rope_type == "yarn":
        settings.update(_yarn_settings(rope))
    return settings


def llama3_hook_parameters(rope: HFRope) -> dict | None:
    """`_apply_scaling`'s arguments for a llama3 RoPE whose sub-parameters differ from Megatron-Core's defaults
    (None: Megatron-Core builds it as HF does)."""
    if rope.rope_type != "llama3":
        return None
    stated = {name: rope.params[name] for name in LLAMA3_SUB_PARAMETERS}
    return {"factor": rope.params["factor"], **stated} if stated != megatron_llama3_defaults() else None


def _yarn_errors(rope: HFRope) -> list[str]:
    from megatron.core.models.common.embeddings.yarn_rotary_pos_embedding import _yarn_get_concentration_factor

    errors = []
    if "MistralForCausalLM" in rope.architectures:
        errors.append(f"{rope.setting('rope_type')}: Megatron-Bridge's Mistral bridge cannot build a YaRN model "
                      f"(its provider takes no scaling factor); {HF_ENGINE_FIX}")
    if rope.params.get("partial_rotary_factor", 1.0) != 1.0:
        errors.append(f"{rope.setting('partial_rotary_factor')}: Megatron-Core's YaRN rotates the whole head; "
                      f"{HF_ENGINE_FIX}")
    stated = rope.params.get("attention_factor")
    if stated is not None and stated != _yarn_get_concentration_factor(_yarn_factor(rope), *_yarn_mscales(rope)):
        errors.append(f"{rope.setting('attention_factor')}: Megatron-Core derives YaRN's attention factor from "
                      f"factor, mscale and mscale_all_dim and takes no other; {HF_ENGINE_FIX}")
    return errors


def unsupported_rope(rope: HFRope) -> list[str]:
    """What of the HF model's RoPE Megatron-Core cannot reproduce (empty: all of it)."""
    if not rope.applies:
        return []
    per_layer = sorted(name for name, value in rope.params.items() if isinstance(value, dict))
    if per_layer:
        return [f"hf_model_name_or_path config.json: {rope.key} ({rope.folder}) holds RoPE parameters per layer "
                f"type ({', '.join(per_layer)}); Megatron-Core's GPT model has one RoPE for all layers; "
                f"{HF_ENGINE_FIX}"]
    if rope.rope_type not in SUPPORTED_TYPES:
        return [f"{rope.setting('rope_type')}: Megatron-Core has no {rope.rope_type} RoPE (it has "
                f"{', '.join(SUPPORTED_TYPES)}), so the model would train with positions other than its own; "
                f"{HF_ENGINE_FIX}"]
    return _yarn_errors(rope) if rope.rope_type == "yarn" else []


def checked_hf_rope(folder: Path) -> HFRope:
    """The HF model's RoPE, or a ConfigError naming each setting Megatron-Core cannot reproduce."""
    rope = read_hf_rope(folder)
    errors = unsupported_rope(rope)
    if errors:
        raise ConfigError(errors)
    return rope


def _llama3_frequencies(model, parameters: dict):
    """The frequencies HF's llama3 RoPE uses, from Megatron-Core's own RotaryEmbedding and `_apply_scaling`."""
    from megatron.core.models.common.embeddings.rotary_pos_embedding import RotaryEmbedding

    plain = RotaryEmbedding(kv_channels=model.config.kv_channels, rotary_percent=model.rotary_percent,
                            rotary_base=model.rotary_base, use_cpu_initialization=True)
    return plain._apply_scaling(plain.inv_freq, **parameters)


def use_llama3_frequencies(model: list, parameters: dict) -> list:
    """Megatron-Bridge pre-wrap hook: every GPT chunk's RoPE gets the llama3 frequencies of these
    `_apply_scaling` arguments (before its first forward, which caches the embedding)."""
    from megatron.core.models.gpt import GPTModel

    for chunk in model:
        for module in chunk.modules():
            if isinstance(module, GPTModel) and getattr(module, "rotary_pos_emb", None) is not None:
                current = module.rotary_pos_emb.inv_freq
                module.rotary_pos_emb.inv_freq = _llama3_frequencies(module, parameters).to(current.device)
    return model


def use_hf_rope(provider, rope: HFRope) -> None:
    """Set the provider to build the HF model's RoPE (checked_hf_rope has refused what it cannot)."""
    if not rope.applies:
        return
    for field, value in megatron_rope_settings(rope).items():
        setattr(provider, field, value)
    parameters = llama3_hook_parameters(rope)
    if parameters:
        provider.register_pre_wrap_hook(functools.partial(use_llama3_frequencies, parameters=parameters))


def checkpoint_rope_errors(provider, rope: HFRope) -> list[str]:
    """Where a Megatron checkpoint's saved model config would build a RoPE other than its HF model's."""
    if not rope.applies:
        return []
    fix = "start from the HF model instead (--convert_from_hf --hf_model_name_or_path HF)"
    differences = [f"{field}={getattr(provider, field, None)!r} (the HF config needs {value!r})"
                   for field, value in megatron_rope_settings(rope).items() if getattr(provider, field, None) != value]
    errors = []
    if differences:
        errors.append(f"model.load: the checkpoint's model config does not build the RoPE of {rope.folder}: "
                      f"{', '.join(differences)}; {fix}")
    if llama3_hook_parameters(rope):
        errors.append(f"model.load: {rope.setting(*LLAMA3_SUB_PARAMETERS)}: these llama3 sub-parameters differ from "
                      f"Megatron-Core's fixed ones ({megatron_llama3_defaults()}) and are applied only when the model "
                      f"is built from the HF config (a checkpoint's saved config cannot hold them); {fix}")
    return errors
