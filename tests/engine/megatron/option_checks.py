"""Helpers for the tests of one engine option's config checks: a config with the option set and some sections
changed, and the cross-field problems that name the option."""

from primus_bridge.config import PrimusConfig


def config_with(base: dict, **sections) -> PrimusConfig:
    """`base` with each section's keys replaced (a dict) or the top-level key set (anything else)."""
    values = dict(base)
    for name, changed in sections.items():
        values[name] = {**values.get(name, {}), **changed} if isinstance(changed, dict) else changed
    return PrimusConfig.model_validate(values)


def problems_naming(cfg: PrimusConfig, option: str) -> list[str]:
    """The cross-field problems of `cfg` (for 8 GPUs) that mention `option`."""
    from primus_bridge.config.checks import cross_field_errors

    return [error for error in cross_field_errors(cfg, {}, world_size=8) if option in error]
