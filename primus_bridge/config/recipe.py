"""The shipped recipes (the top-level `recipes` package), looked up by name.

Recipes are data: model shapes and tuning tables, built from `primus_bridge.models` and
`primus_bridge.hardware` only. This is the one module of primus_bridge that imports them; an unknown
name is a ConfigError naming the `recipe` key.
"""

import recipes
from recipes import Recipe

from .errors import ConfigError


def recipe(name: str) -> Recipe:
    """The recipe called `name`; ConfigError naming the valid ones when there is none."""
    try:
        return recipes.recipe(name)
    except ValueError as err:
        raise ConfigError(f"recipe: {err}") from None


def recipe_layer(name: str, mode: str, gpu: str | None) -> dict:
    """The recipe's settings for this mode and GPU type, as a config layer; ConfigError for a bad name,
    mode or GPU type."""
    try:
        return recipes.config_layer(name, mode, gpu)
    except (ValueError, KeyError) as err:
        raise ConfigError(f"recipe: {err.args[0] if err.args else err}") from None
