"""Build the validated config from its layers and report every problem at once."""

from collections.abc import Callable

from pydantic import ValidationError

from .checks import cross_field_errors
from .errors import ConfigError, did_you_mean
from .layers import Layer, flatten, merge_layers
from .schema import PrimusConfig


def valid_keys(model=PrimusConfig, prefix: str = "") -> list[str]:
    """Every dotted key the schema accepts (sections and leaves)."""
    keys = []
    for name, info in model.model_fields.items():
        keys.append(f"{prefix}{name}")
        sub = info.annotation
        if isinstance(sub, type) and hasattr(sub, "model_fields"):
            keys.extend(valid_keys(sub, f"{prefix}{name}."))
    return keys


def _describe(error: dict, origins: dict[str, str]) -> str:
    dotted = ".".join(str(part) for part in error["loc"])
    where = origins.get(dotted) or next((o for k, o in origins.items() if k.startswith(dotted + ".")), None)
    prefix = f"{where}: " if where and not where.startswith(("default", "recipe")) else ""
    if error["type"] == "extra_forbidden":
        hint = did_you_mean(dotted, valid_keys()) or ' see primus-bridge print-config for the valid keys'
        return f"{prefix}{dotted}: unknown key,{hint}"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "value_error" or dotted == "":
        return f"{prefix}{message}" if prefix.startswith("cli") or message.startswith(dotted) else \
            f"{prefix}{dotted + ': ' if dotted else ''}{message}"
    return f"{prefix}{dotted}: got {error['input']!r}: {message}"


ExtraChecks = Callable[[PrimusConfig], list[str]]
"""A caller's own checks of a schema-valid config (e.g. train's output paths), reported with the cross-field ones."""


def validate(values: dict, origins: dict[str, str], world_size: int | None = None,
             extra_checks: ExtraChecks | None = None, *, trains: bool = True) -> PrimusConfig:
    """Values -> PrimusConfig, or ConfigError listing every problem (schema, cross-field, then `extra_checks`)."""
    try:
        cfg = PrimusConfig.model_validate(values)
    except ValidationError as err:
        raise ConfigError([_describe(e, origins) for e in err.errors()]) from None
    problems = cross_field_errors(cfg, origins, world_size, trains=trains)
    problems += extra_checks(cfg) if extra_checks else []
    if problems:
        raise ConfigError(problems)
    return cfg


def resolve(layers: list[Layer], world_size: int | None = None,
            extra_checks: ExtraChecks | None = None, *, trains: bool = True) -> tuple[PrimusConfig, dict[str, str]]:
    """Merge layers (lowest precedence first), validate, and return the config with each key's origin."""
    values, origins = merge_layers(layers)
    cfg = validate(values, origins, world_size, extra_checks, trains=trains)
    for dotted in flatten(cfg.model_dump()):
        origins.setdefault(dotted, "default")
    return cfg, origins
