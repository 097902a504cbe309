"""Record layouts -> Conversation: alpaca, sharegpt and openai, plus `auto` detection.

Every problem raises DataError naming the record's file:line and the field, e.g.
"data.jsonl:7: field 'output' must be a string, got int".
"""

from collections.abc import Callable

from .errors import DataError
from .records import Conversation, RawRecord, Turn

FORMATS = ("alpaca", "sharegpt", "openai")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system"}
OPENAI_ROLES = {"user": "user", "assistant": "assistant", "system": "system"}


def _string(record: dict, key: str, where: str, required: bool = True, label: str | None = None) -> str:
    label = label or f"field {key!r}"
    if key not in record or record[key] is None:
        if required:
            raise DataError(where, f"missing {label}", "missing field")
        return ""
    value = record[key]
    if not isinstance(value, str):
        raise DataError(where, f"{label} must be a string, got {type(value).__name__}", "wrong type")
    return value


def _object(raw: RawRecord) -> dict:
    if not isinstance(raw.value, dict):
        raise DataError(raw.where, f"record must be a JSON object, got {type(raw.value).__name__}", "wrong type")
    return raw.value


def _system(value: str) -> str | None:
    return value if value.strip() else None


def _check_reply(text: str, where: str, label: str) -> str:
    if not text.strip():
        raise DataError(where, f"empty output: {label} is empty (nothing to train on)", "empty output")
    return text


def alpaca(raw: RawRecord) -> Conversation:
    """instruction, input, output; optional system and history [[user, assistant], ...]."""
    record, where = _object(raw), raw.where
    instruction = _string(record, "instruction", where)
    context = _string(record, "input", where, required=False)
    output = _check_reply(_string(record, "output", where), where, "field 'output'")
    if not (instruction.strip() or context.strip()):
        raise DataError(where, "empty instruction: 'instruction' and 'input' are both empty", "empty prompt")
    history = _history(record.get("history"), where)
    turns = history + (Turn(instruction, output, context),)
    return Conversation(_system(_string(record, "system", where, required=False)), turns, where, raw.ordinal)


def _history(value: object, where: str) -> tuple[Turn, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise DataError(where, f"field 'history' must be a list of [user, assistant] pairs, got "
                               f"{type(value).__name__}", "wrong type")
    turns = []
    for i, pair in enumerate(value):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            raise DataError(where, f"history[{i}] must be a [user, assistant] pair of strings", "wrong type")
        turns.append(Turn(pair[0], _check_reply(pair[1], where, f"history[{i}][1]")))
    return tuple(turns)


def sharegpt(raw: RawRecord) -> Conversation:
    """conversations: [{from: human|gpt|system|user|assistant, value}], optional top-level system."""
    record, where = _object(raw), raw.where
    system = _string(record, "system", where, required=False)
    roles_texts = _messages(record, where, "conversations", "from", "value", SHAREGPT_ROLES)
    return _conversation(roles_texts, system, where, raw.ordinal, "conversations")


def openai(raw: RawRecord) -> Conversation:
    """messages: [{role: system|user|assistant, content}]."""
    record, where = _object(raw), raw.where
    roles_texts = _messages(record, where, "messages", "role", "content", OPENAI_ROLES)
    return _conversation(roles_texts, "", where, raw.ordinal, "messages")


def _messages(record: dict, where: str, key: str, role_key: str, text_key: str,
              roles: dict[str, str]) -> list[tuple[str, str]]:
    """[(role, text)] with roles mapped to system/user/assistant."""
    items = record.get(key)
    if items is None:
        raise DataError(where, f"missing field {key!r}", "missing field")
    if not isinstance(items, list):
        raise DataError(where, f"field {key!r} must be a list, got {type(items).__name__}", "wrong type")
    if not items:
        raise DataError(where, f"empty conversation: {key!r} has no turns", "empty conversation")
    out = []
    for i, item in enumerate(items):
        label = f"{key}[{i}]"
        if not isinstance(item, dict):
            raise DataError(where, f"{label} must be an object, got {type(item).__name__}", "wrong type")
        role = _string(item, role_key, where, label=f"{label}.{role_key}")
        if role not in roles:
            raise DataError(where, f"unknown role {role!r} in {label}.{role_key}; use one of "
                                   f"{', '.join(roles)}", "unknown role")
        out.append((roles[role], _string(item, text_key, where, label=f"{label}.{text_key}")))
    return out


def _conversation(roles_texts: list[tuple[str, str]], system: str, where: str, ordinal: int,
                  key: str) -> Conversation:
    if roles_texts[0][0] == "system":
        if system.strip():
            raise DataError(where, f"two system prompts: top-level 'system' and {key}[0]; keep one",
                            "turns out of order")
        system, roles_texts, offset = roles_texts[0][1], roles_texts[1:], 1
    else:
        offset = 0
    if not roles_texts:
        raise DataError(where, f"empty conversation: {key!r} has only a system prompt", "empty conversation")
    turns = [_turn(roles_texts[i:i + 2], where, key, i + offset) for i in range(0, len(roles_texts), 2)]
    return Conversation(_system(system), tuple(turns), where, ordinal)


def _turn(pair: list[tuple[str, str]], where: str, key: str, index: int) -> Turn:
    """One user -> assistant exchange; `index` is the position of its user message in the record's list."""
    for j, (role, expected) in enumerate(zip((role for role, _ in pair), ("user", "assistant"))):
        if role != expected:
            raise DataError(where, f"turns must alternate user/assistant after an optional leading system: "
                                   f"{key}[{index + j}] is {role!r}, expected {expected!r}", "turns out of order")
    if len(pair) == 1:
        raise DataError(where, f"conversation ends with a user turn ({key}[{index}]); it needs an assistant "
                               "reply", "turns out of order")
    if not pair[0][1].strip():
        raise DataError(where, f"empty user turn at {key}[{index}]", "empty prompt")
    return Turn(pair[0][1], _check_reply(pair[1][1], where, f"{key}[{index + 1}]"))


NORMALIZERS: dict[str, Callable[[RawRecord], Conversation]] = {
    "alpaca": alpaca, "sharegpt": sharegpt, "openai": openai,
}


def detect_format(raw: RawRecord) -> str:
    """The format of a (first) record from its keys; DataError when it cannot tell."""
    if not isinstance(raw.value, dict):
        raise DataError(raw.where, "cannot detect the dataset format: the record is not a JSON object; "
                                   "set data.dataset_format (alpaca, sharegpt, openai)", "unknown format")
    keys = set(raw.value)
    matches = [name for name, needed in (("sharegpt", {"conversations"}), ("openai", {"messages"}),
                                         ("alpaca", {"instruction", "output"})) if needed <= keys]
    if len(matches) != 1:
        raise DataError(raw.where, f"cannot detect the dataset format from the record's keys {sorted(keys)}: "
                                   "alpaca needs instruction/output, sharegpt conversations, openai messages; "
                                   "set data.dataset_format (--dataset_format)", "unknown format")
    return matches[0]
