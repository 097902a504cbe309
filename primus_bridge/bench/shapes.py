"""Decoder shapes the benchmarks build with random weights (no downloads).

The architecture class is `primus_bridge.models.shape` and the numbers are the recipes' (one place for each
model's facts); this module names the benchmark shapes and reads a built checkpoint's shape back.
"""

import json
from pathlib import Path

from ..config.recipe import recipe
from ..models.shape import ModelShape

SHAPE_RECIPES = {"llama3-8b": "llama3_8b", "llama3.2-1b": "llama32_1b", "llama3.2-3b": "llama32_3b"}
"""Benchmark shape -> the recipe whose architecture it uses (recipes/<name>.py)."""


SHAPES: dict[str, ModelShape] = {name: recipe(recipe_name).shape for name, recipe_name in SHAPE_RECIPES.items()}


def get_shape(name: str) -> ModelShape:
    if name not in SHAPES:
        raise KeyError(f"unknown model shape {name!r}; known: {', '.join(sorted(SHAPES))}")
    return SHAPES[name]


def shape_from_hf_config(config_json: Path) -> ModelShape:
    """The shape of a saved HF checkpoint (its config.json)."""
    return ModelShape.from_hf_config(json.loads(Path(config_json).read_text(encoding="utf-8")))
