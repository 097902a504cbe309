"""JSON parsing that refuses what the standard module lets through: duplicate keys, NaN and Infinity.

A record like {"output": "a", "output": "b"} silently keeps "b" with plain json.loads; here it is an error.
"""

import json


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    record = dict(pairs)
    if len(record) != len(pairs):
        seen: set[str] = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise ValueError(f"duplicate key {duplicate!r}")
    return record


def _no_constants(name: str):
    raise ValueError(f"{name} is not valid JSON")


JSON_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants)


def parse_json_line(raw: bytes, first: bool = False) -> tuple[object, str | None, str | None]:
    """(value, problem, kind) for one JSON Lines line: problem is None when it parsed."""
    try:
        text = raw.rstrip(b"\r\n").decode("utf-8")
    except UnicodeDecodeError as err:
        return None, f"invalid UTF-8 at byte {err.start} of the line", "invalid UTF-8"
    if first:
        text = text.removeprefix("\ufeff")
    try:
        return JSON_DECODER.decode(text), None, None
    except json.JSONDecodeError as err:
        return None, f"invalid JSON: {err.msg} at column {err.colno}", "invalid JSON"
    except ValueError as err:
        return None, f"invalid JSON: {err}", "invalid JSON"
    except RecursionError:
        return None, "invalid JSON: nested too deeply", "invalid JSON"
