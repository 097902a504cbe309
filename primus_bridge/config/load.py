"""From parsed CLI arguments to a validated config: defaults < recipe < YAML < CLI."""

import argparse

from .errors import ConfigError
from .flags import cli_layer
from .layers import Layer, merge_layers
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
    import recipes

    from ..hardware import detect_gpu_type

    mode = "lora" if (user.get("lora") or {}).get("use_lora") else "sft"
    gpu = user.get("gpu") or detect_gpu_type()
    try:
        values = recipes.config_layer(str(name), mode, gpu)
    except (ValueError, KeyError) as err:
        raise ConfigError(f"recipe: {err.args[0] if err.args else err}") from None
    return Layer(f"recipe {name} ({mode}, {gpu or 'no gpu'})", values)


def load_config_with_origins(args: argparse.Namespace, world_size: int | None = None,
                             extra_checks: ExtraChecks | None = None) -> tuple[PrimusConfig, dict[str, str]]:
    """Validated config plus dotted key -> where its value came from ('default', 'recipe ...', 'file:line', 'cli ...').

    `extra_checks(cfg)` (a verb's own checks) run once the schema accepts the values; their problems are
    reported together with the cross-field ones.
    """
    yaml_layer, flags = _yaml_layer(args.config), cli_layer(args)
    user_values, _ = merge_layers([yaml_layer, flags])
    recipe = _recipe_layer(user_values)
    layers = [layer for layer in (recipe, yaml_layer, flags) if layer is not None]
    return resolve(layers, world_size, extra_checks)


def load_config(args: argparse.Namespace, world_size: int | None = None,
                extra_checks: ExtraChecks | None = None) -> PrimusConfig:
    return load_config_with_origins(args, world_size, extra_checks)[0]
