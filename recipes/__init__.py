"""Per-model recipes: architecture facts plus tuned settings per mode (sft / lora) and GPU type.

Each module `recipes/<name>.py` exposes `config_layer(mode, gpu) -> dict`, a nested dict in the
user's YAML layout; `config_layer` here finds the module and turns failures into config errors.
"""

import importlib
import pkgutil


def available() -> list[str]:
    """Names of the shipped recipe modules."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def load(name: str):
    """The recipe module called `name`; ValueError naming the valid ones when there is none."""
    if name not in available():
        raise ValueError(f"recipe {name!r} not found; available: {', '.join(available()) or 'none'}")
    return importlib.import_module(f"{__name__}.{name}")


def config_layer(name: str, mode: str, gpu: str | None) -> dict:
    """The recipe's settings for this mode and GPU type, as a config layer."""
    return load(name).config_layer(mode, gpu)
