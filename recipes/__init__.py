"""Per-model recipes: architecture facts plus tuned settings per mode (sft / lora) and GPU type.

Each module `recipes/<name>.py` holds a `RECIPE` (`recipes._base.Recipe`: the model's
`primus_bridge.models.shape.ModelShape` and its tuning tables) and states its recommended parallelism in its
docstring. `config_layer(name, mode, gpu)` renders it as a nested dict in the user's YAML layout.

Recipes are data: they import only `primus_bridge.models` and `primus_bridge.hardware`, and primus_bridge
reads them through one module, `primus_bridge.config.recipe`.
"""

import importlib
import pkgutil

from ._base import Recipe


def available() -> list[str]:
    """Names of the shipped recipe modules."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def load(name: str):
    """The recipe module called `name`; ValueError naming the valid ones when there is none."""
    if name not in available():
        raise ValueError(f"recipe {name!r} not found; available: {', '.join(available()) or 'none'}")
    return importlib.import_module(f"{__name__}.{name}")


def recipe(name: str) -> Recipe:
    """The `Recipe` of the module called `name`."""
    return load(name).RECIPE


def config_layer(name: str, mode: str, gpu: str | None) -> dict:
    """The recipe's settings for this mode and GPU type, as a config layer."""
    return recipe(name).config_layer(mode, gpu)
