"""Config layers and their precedence: CLI flag > YAML > recipe > defaults, with where each value came from."""

from dataclasses import dataclass, field

from .yaml_source import deep_merge


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    """{'a': {'b': 1}} -> {'a.b': 1}; leaves only."""
    flat = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def nest(dotted: str, value) -> dict:
    """'a.b', 1 -> {'a': {'b': 1}}."""
    head, _, rest = dotted.partition(".")
    return {head: nest(rest, value) if rest else value}


@dataclass
class Layer:
    """One source of config values: what it sets, and a label (or a per-key label) saying where from."""

    name: str
    values: dict
    origins: dict[str, str] = field(default_factory=dict)

    def origin_of(self, dotted: str) -> str:
        return self.origins.get(dotted, self.name)


def merge_layers(layers: list[Layer]) -> tuple[dict, dict[str, str]]:
    """Merge lowest-precedence first; returns the values and dotted key -> origin of the winning layer."""
    merged: dict = {}
    origins: dict[str, str] = {}
    for layer in layers:
        merged = deep_merge(merged, layer.values)
        for dotted in flatten(layer.values):
            origins[dotted] = layer.origin_of(dotted)
    return merged, origins
