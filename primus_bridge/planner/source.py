"""Where the planner learns the model's shape: a local HF model folder, the recipe, or the local HF cache.

All three are read from disk only; nothing here reaches the network.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from ..config import PrimusConfig
from ..config.recipe import recipe
from ..models.shape import ModelShape


@dataclass(frozen=True)
class ShapeSource:
    shape: ModelShape
    name: str
    """How the plan names the model: the recipe or the HF model path."""
    origin: str


def _from_config_json(path: Path, hf_id: str) -> ModelShape:
    try:
        return ModelShape.from_hf_config(json.loads(path.read_text()), hf_id=hf_id)
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"{path}: cannot read the model shape: {err}") from None


def _cached_config_json(hub_id: str) -> Path | None:
    """config.json of a hub id already in the local HF cache (no download)."""
    if hub_id.count("/") != 1 or Path(hub_id).exists():
        return None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(hub_id, "config.json")
    return Path(found) if isinstance(found, str) else None


def find_model_shape(cfg: PrimusConfig) -> ShapeSource | None:
    """The model's shape when it is known before loading; None when it is not.

    A local model folder wins (it is what will be trained), then the recipe, then the HF cache.
    """
    hf = cfg.hf_model_name_or_path
    local = Path(hf) / "config.json" if hf else None
    if local is not None and local.is_file():
        return ShapeSource(_from_config_json(local, hf), Path(hf).name, str(local))
    if cfg.recipe:
        return ShapeSource(recipe(cfg.recipe).shape, cfg.recipe, f"recipe {cfg.recipe}")
    cached = _cached_config_json(hf) if hf else None
    if cached is not None:
        return ShapeSource(_from_config_json(cached, hf), hf, f"HF cache {cached}")
    return None
