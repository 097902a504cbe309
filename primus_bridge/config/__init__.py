"""One validated config from CLI flags, YAML (with extends: and ${ENV}) and recipes.

Public entry points: `load_config(args)` after `add_config_arguments(parser)`, and `PrimusConfig`.
"""

from .errors import CONFIG_EXIT_CODE, ConfigError
from .flags import add_config_arguments
from .load import load_config, load_config_with_origins
from .schema import PrimusConfig

__all__ = [
    "CONFIG_EXIT_CODE",
    "ConfigError",
    "PrimusConfig",
    "add_config_arguments",
    "load_config",
    "load_config_with_origins",
]
