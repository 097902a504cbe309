"""From parsed CLI arguments to a validated config: defaults < recipe < YAML < CLI."""

import argparse

from ..hardware import detect_gpu_type
from .flags import cli_layer
from .layers import Layer, merge_layers
from .recipe import recipe_layer
from .resolve import ExtraChecks, resolve
from .schema import PrimusConfig
from .yaml_source import load_yaml


def _yaml_layer(path: str | None) -> Layer:
    if not path:
        return Layer("yaml", {})
    values, lines = load_yaml(path)
    return Layer(f"yaml {path}", values, lines)


def _recipe_layer(user: dict) -> Layer | None:
    """The recipe named by the user's layers, for their mode and GPU (auto-detected when not given)."""
    name = user.get("recipe")
    if not name:
        return None
    mode = "lora" if (user.get("lora") or {}).get("use_lora") else "sft"
    gpu = user.get("gpu") or detect_gpu_type()
    values = recipe_layer(str(name), mode, gpu)
    return Layer(f"recipe {name} ({mode}, {gpu or 'no gpu'})", values)


def load_config_with_origins(args: argparse.Namespace, world_size: int | None = None,
                             extra_checks: ExtraChecks | None = None, *,
                             trains: bool = True) -> tuple[PrimusConfig, dict[str, str]]:
    """Validated config plus dotted key -> where its value came from ('default', 'recipe ...', 'file:line', 'cli ...').

    `extra_checks(cfg)` (a verb's own checks) run once the schema accepts the values; their problems are
    reported together with the cross-field ones. `trains=False` (convert) leaves out what only training needs.
    """
    yaml_layer, flags = _yaml_layer(args.config), cli_layer(args)
    user_values, _ = merge_layers([yaml_layer, flags])
    recipe = _recipe_layer(user_values)
    layers = [layer for layer in (recipe, yaml_layer, flags) if layer is not None]
    return resolve(layers, world_size, extra_checks, trains=trains)


def load_config(args: argparse.Namespace, world_size: int | None = None,
                extra_checks: ExtraChecks | None = None, *, trains: bool = True) -> PrimusConfig:
    return load_config_with_origins(args, world_size, extra_checks, trains=trains)[0]
