"""Tool schemas and tool calls as the record formats give them -> the record model's layout.

Schemas become {"type": "function", "function": {...}}: a bare function schema ({"name", "description",
"parameters"}, as LLaMA-Factory's sharegpt `tools` column holds) is wrapped, an already wrapped one is kept.
A call's arguments become a dict, from a JSON object or a JSON string of one (OpenAI sends a string).
JSON inside a field is parsed as strictly as a record (no duplicate keys, NaN or Infinity).
"""

import json

from .errors import DataError
from .records import ToolCall
from .strict_json import JSON_DECODER


def parse_json_text(text: str, where: str, label: str, kind: str) -> object:
    """The JSON value that the string field `label` holds."""
    try:
        return JSON_DECODER.decode(text)
    except json.JSONDecodeError as err:
        reason = f"{err.msg} at column {err.colno}"
    except ValueError as err:
        reason = str(err)
    except RecursionError:
        reason = "nested too deeply"
    raise DataError(where, f"{label}: invalid JSON ({reason})", kind)


def tool_schemas(value: object, where: str, key: str = "tools") -> tuple[dict, ...]:
    """The `tools` field (a list of function schemas, or a JSON string of one; empty or absent: none)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return ()
    if isinstance(value, str):
        value = parse_json_text(value, where, f"field {key!r}", "invalid tools")
    if not isinstance(value, list):
        raise DataError(where, f"field {key!r} must be a list of function schemas (or a JSON string of one), got "
                               f"{type(value).__name__}", "invalid tools")
    return tuple(_schema(item, where, f"{key}[{i}]") for i, item in enumerate(value))


def _schema(item: object, where: str, label: str) -> dict:
    if not isinstance(item, dict):
        raise DataError(where, f"{label} must be a function schema object, got {type(item).__name__}",
                        "invalid tools")
    wrapped = "type" in item
    if wrapped and item["type"] != "function":
        raise DataError(where, f"{label}.type is {item['type']!r}; only function tools ('function') are supported",
                        "invalid tools")
    function = item.get("function") if wrapped else item
    inner = f"{label}.function" if wrapped else label
    if not isinstance(function, dict):
        raise DataError(where, f"{inner} must be an object with the function's name, description and parameters",
                        "invalid tools")
    _name(function, where, inner, "invalid tools")
    if "parameters" in function and not isinstance(function["parameters"], dict):
        raise DataError(where, f"{inner}.parameters must be a JSON schema object, got "
                               f"{type(function['parameters']).__name__}", "invalid tools")
    return item if wrapped else {"type": "function", "function": function}


def _name(holder: dict, where: str, label: str, kind: str) -> str:
    name = holder.get("name")
    if not isinstance(name, str) or not name.strip():
        problem = "has no 'name'" if name is None else f"has no usable 'name' (got {name!r:.40})"
        raise DataError(where, f"{label} {problem}", kind)
    return name


def _arguments(value: object, where: str, label: str) -> dict:
    if "arguments" not in value:
        raise DataError(where, f"{label} has no 'arguments' (use {{}} for a call without arguments)",
                        "invalid tool call")
    arguments = value["arguments"]
    if isinstance(arguments, str):
        arguments = parse_json_text(arguments, where, f"{label}.arguments", "invalid tool call")
    if not isinstance(arguments, dict):
        raise DataError(where, f"{label}.arguments must be a JSON object (or a JSON string of one), got "
                               f"{type(arguments).__name__}", "invalid tool call")
    return arguments


def _call_id(holder: dict, where: str, label: str) -> str | None:
    call_id = holder.get("id")
    if call_id is not None and not isinstance(call_id, str):
        raise DataError(where, f"{label}.id must be a string, got {type(call_id).__name__}", "invalid tool call")
    return call_id


def sharegpt_calls(value: object, where: str, label: str) -> tuple[ToolCall, ...]:
    """A `function_call` message's value: JSON (or already parsed) {"name", "arguments"} or a list of them."""
    if isinstance(value, str):
        value = parse_json_text(value, where, f"{label} (function_call)", "invalid tool call")
    calls = value if isinstance(value, list) else [value]
    if not calls:
        raise DataError(where, f"{label}: the function_call list is empty", "invalid tool call")
    out = []
    for i, call in enumerate(calls):
        item = f"{label}[{i}]" if isinstance(value, list) else label
        if not isinstance(call, dict):
            raise DataError(where, f"{item} must be a {{\"name\", \"arguments\"}} object, got {type(call).__name__}",
                            "invalid tool call")
        out.append(ToolCall(_name(call, where, f"{item} (function_call)", "invalid tool call"),
                            _arguments(call, where, item), _call_id(call, where, item)))
    return tuple(out)


def openai_calls(value: object, where: str, label: str) -> tuple[ToolCall, ...]:
    """An assistant message's `tool_calls`: [{"id", "type": "function", "function": {"name", "arguments"}}]."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise DataError(where, f"{label} must be a list, got {type(value).__name__}", "invalid tool call")
    out = []
    for i, call in enumerate(value):
        item = f"{label}[{i}]"
        if not isinstance(call, dict):
            raise DataError(where, f"{item} must be an object, got {type(call).__name__}", "invalid tool call")
        if call.get("type", "function") != "function":
            raise DataError(where, f"{item}.type is {call['type']!r}; only 'function' calls are supported",
                            "invalid tool call")
        function = call.get("function")
        if not isinstance(function, dict):
            raise DataError(where, f"{item}.function must be an object with 'name' and 'arguments'",
                            "invalid tool call")
        out.append(ToolCall(_name(function, where, f"{item}.function", "invalid tool call"),
                            _arguments(function, where, f"{item}.function"), _call_id(call, where, item)))
    return tuple(out)
