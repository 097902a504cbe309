"""Read one YAML config file: `extends:` chains, `${ENV_VAR:default}` values, and where each key was written.

Each loaded key keeps its origin as `file:line`, so every later error can point at the line to fix.
"""

import os
import re
from pathlib import Path

import yaml

from .errors import ConfigError

MAX_VALUES = 100_000  # bound on values after YAML aliases expand ("billion laughs")
ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (a silent override is a classic config bug)."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode, deep: bool = False):
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {seen[key] + 1})", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _key_lines(node, prefix: str, origin: str, out: dict[str, str]) -> None:
    """Record `file:line` for every dotted key below a mapping node."""
    if not isinstance(node, yaml.MappingNode):
        return
    for key_node, value_node in node.value:
        dotted = f"{prefix}{key_node.value}"
        out[dotted] = f"{origin}:{key_node.start_mark.line + 1}"
        _key_lines(value_node, dotted + ".", origin, out)


def _count_values(value, budget: int) -> int:
    """Values in a loaded tree, counting shared (aliased) subtrees each time they appear; stops past budget."""
    stack, count = [value], 0
    while stack and count <= budget:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def _interpolate(value, where: str):
    """Replace ${VAR} / ${VAR:default} in strings; a value that is only one ${...} gets its YAML type back."""
    if isinstance(value, dict):
        return {k: _interpolate(v, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, where) for v in value]
    if not isinstance(value, str) or "${" not in value:
        return value

    def substitute(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is None:
            raise ConfigError(f"{where}: environment variable {name} is not set and has no default; "
                              f"set it or write ${{{name}:default}}")
        return default

    replaced = ENV_PATTERN.sub(substitute, value)
    if ENV_PATTERN.fullmatch(value):
        try:
            return yaml.safe_load(replaced) if replaced != "" else None
        except yaml.YAMLError:
            return replaced
    return replaced


def _interpolate_tree(data: dict, lines: dict[str, str], prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out[key] = _interpolate_tree(value, lines, dotted + ".")
        else:
            out[key] = _interpolate(value, lines.get(dotted, dotted))
    return out


def _parse(path: Path) -> tuple[dict, dict[str, str]]:
    origin = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{origin}: config file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{origin}: cannot read config file: {err}") from None
    try:
        node = yaml.compose(text, Loader=_LineLoader)
        data = yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{origin}{line}: invalid YAML: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{origin}: invalid YAML: nesting too deep") from None
    if data is None:
        return {}, {}
    if _count_values(data, MAX_VALUES) > MAX_VALUES:
        raise ConfigError(f"{origin}: config too large: more than {MAX_VALUES} values (after expanding aliases)")
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}:1: expected a mapping of config sections at the top, got {type(data).__name__}")
    lines: dict[str, str] = {}
    _key_lines(node, "", origin, lines)
    return _interpolate_tree(data, lines), lines


def deep_merge(base: dict, over: dict) -> dict:
    """Values of `over` win; nested mappings merge key by key; lists are replaced whole."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_yaml(path: str | Path, _chain: tuple[Path, ...] = ()) -> tuple[dict, dict[str, str]]:
    """Load a config file and everything it `extends:`; returns (values, dotted key -> 'file:line')."""
    path = Path(path).resolve() if _chain else Path(path)
    if path.resolve() in _chain:
        raise ConfigError(f"{path}: extends cycle: " + " -> ".join(str(p) for p in (*_chain, path.resolve())))
    data, lines = _parse(path)
    parents = data.pop("extends", None)
    if parents is None:
        return data, lines
    parent_list = [parents] if isinstance(parents, str) else parents
    if not isinstance(parent_list, list) or not all(isinstance(p, str) for p in parent_list):
        raise ConfigError(f"{lines.get('extends', path)}: extends: expected a file path or a list of paths")
    merged, merged_lines = {}, {}
    for parent in parent_list:
        parent_path = (path.parent / parent).resolve()
        parent_data, parent_lines = load_yaml(parent_path, (*_chain, path.resolve()))
        merged = deep_merge(merged, parent_data)
        merged_lines.update(parent_lines)
    lines.pop("extends", None)
    return deep_merge(merged, data), {**merged_lines, **lines}
