"""Record layouts -> Conversation: alpaca, sharegpt and openai, plus `auto` detection.

Every problem raises DataError naming the record's file:line and the field, e.g.
"data.jsonl:7: field 'output' must be a string, got int".

Chat layouts with tool calls:
- sharegpt (LLaMA-Factory's convention): roles human, gpt, function_call, observation (or tool, as Hermes-style
  data writes it), optional system; a function_call value is a JSON string of {"name", "arguments"} or a list
  of them; a top-level `tools` column holds the function schemas (a JSON string or a list).
- openai: assistant messages with `tool_calls` (content may be null), role `tool` messages with tool_call_id and
  name, a top-level `tools` list; content may also be a list of {"type": "text", "text"} parts.
A turn is a user message, then assistant messages and tool results, ending with an assistant message; a tool
result follows an assistant message (the one whose call it answers) or another tool result.
"""

from collections.abc import Callable
from dataclasses import dataclass

from .errors import DataError
from .records import Conversation, RawRecord, Step, ToolCall, Turn
from .tool_calls import openai_calls, sharegpt_calls, tool_schemas

FORMATS = ("alpaca", "sharegpt", "openai")
FORMAT_COLUMNS = {
    "alpaca": frozenset({"instruction", "input", "output", "system", "history"}),
    "sharegpt": frozenset({"conversations", "system", "tools"}),
    "openai": frozenset({"messages", "tools"}),
}
"""The top-level columns each format reads; any other column with a value is reported as unused."""
MESSAGE_KEYS = {
    "sharegpt": {"": frozenset({"from", "value"})},
    "openai": {"": frozenset({"role", "content"}), "assistant": frozenset({"role", "content", "tool_calls"}),
               "tool": frozenset({"role", "content", "tool_call_id", "name"})},
}
"""The keys read in each message of the chat formats, by role ('' for every other role)."""
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "function_call": "assistant", "observation": "tool", "tool": "tool", "system": "system"}
OPENAI_ROLES = {"user": "user", "assistant": "assistant", "tool": "tool", "system": "system"}
FOLLOWS = {None: ("user",), "user": ("assistant",), "assistant": ("user", "tool"), "tool": ("assistant", "tool")}
"""The roles that may come after each role (None: the first message after an optional system prompt)."""


@dataclass(slots=True)
class _Message:
    """One chat message with its role mapped to system / user / assistant / tool."""

    role: str
    text: str
    index: int
    calls: tuple[ToolCall, ...] = ()
    name: str | None = None
    call_id: str | None = None


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


def _optional_string(record: dict, key: str, where: str, label: str) -> str | None:
    return _string(record, key, where, required=False, label=label) if record.get(key) is not None else None


def _object(raw: RawRecord) -> dict:
    if not isinstance(raw.value, dict):
        raise DataError(raw.where, f"record must be a JSON object, got {type(raw.value).__name__}", "wrong type")
    return raw.value


def _system(value: str) -> str | None:
    """A blank top-level `system` field means no system prompt. (A system message is kept as written, even
    empty: official templates render an empty system message, e.g. Qwen2.5 an empty system block.)"""
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
    """conversations: [{from: human|gpt|function_call|observation|tool|system|user|assistant, value}], optional
    top-level system and tools."""
    record, where = _object(raw), raw.where
    system = _string(record, "system", where, required=False)
    messages = [_sharegpt_message(item, i, where) for i, item in enumerate(_items(record, "conversations", where))]
    tools = tool_schemas(record.get("tools"), where)
    return _conversation(messages, system, tools, where, raw.ordinal, "conversations", name_results=True)


def openai(raw: RawRecord) -> Conversation:
    """messages: [{role: system|user|assistant|tool, content, tool_calls, tool_call_id, name}], optional tools."""
    record, where = _object(raw), raw.where
    messages = [_openai_message(item, i, where) for i, item in enumerate(_items(record, "messages", where))]
    tools = tool_schemas(record.get("tools"), where)
    return _conversation(messages, "", tools, where, raw.ordinal, "messages", name_results=False)


def _items(record: dict, key: str, where: str) -> list[dict]:
    items = record.get(key)
    if items is None:
        raise DataError(where, f"missing field {key!r}", "missing field")
    if not isinstance(items, list):
        raise DataError(where, f"field {key!r} must be a list, got {type(items).__name__}", "wrong type")
    if not items:
        raise DataError(where, f"empty conversation: {key!r} has no turns", "empty conversation")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise DataError(where, f"{key}[{i}] must be an object, got {type(item).__name__}", "wrong type")
    return items


def _role(item: dict, role_key: str, roles: dict[str, str], where: str, label: str) -> str:
    role = _string(item, role_key, where, label=f"{label}.{role_key}")
    if role not in roles:
        raise DataError(where, f"unknown role {role!r} in {label}.{role_key}; use one of {', '.join(roles)}",
                        "unknown role")
    return role


def _sharegpt_message(item: dict, index: int, where: str) -> _Message:
    label = f"conversations[{index}]"
    tag = _role(item, "from", SHAREGPT_ROLES, where, label)
    if tag == "function_call":
        if item.get("value") is None:
            raise DataError(where, f"missing {label}.value", "missing field")
        return _Message("assistant", "", index, calls=sharegpt_calls(item["value"], where, f"{label}.value"))
    return _Message(SHAREGPT_ROLES[tag], _string(item, "value", where, label=f"{label}.value"), index)


def _openai_message(item: dict, index: int, where: str) -> _Message:
    label = f"messages[{index}]"
    role = OPENAI_ROLES[_role(item, "role", OPENAI_ROLES, where, label)]
    calls = openai_calls(item.get("tool_calls"), where, f"{label}.tool_calls")
    if calls and role != "assistant":
        raise DataError(where, f"{label} is a {role!r} message with tool_calls; only assistant messages make "
                               "tool calls", "turns out of order")
    text = _openai_content(item.get("content"), where, f"{label}.content", may_be_null=bool(calls))
    if role != "tool":
        return _Message(role, text, index, calls)
    return _Message(role, text, index, name=_optional_string(item, "name", where, f"{label}.name"),
                    call_id=_optional_string(item, "tool_call_id", where, f"{label}.tool_call_id"))


def _openai_content(content: object, where: str, label: str, may_be_null: bool) -> str:
    """A message's text: a string, a list of text parts (joined as written), or null beside tool_calls."""
    if isinstance(content, str):
        return content
    if content is None:
        if may_be_null:
            return ""
        raise DataError(where, f"missing {label} (only an assistant message with tool_calls may have none)",
                        "missing field")
    if not isinstance(content, list):
        raise DataError(where, f"{label} must be a string or a list of text parts, got {type(content).__name__}",
                        "wrong type")
    texts = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind != "text" or not isinstance(part.get("text"), str):
            found = repr(kind) if isinstance(part, dict) else type(part).__name__
            raise DataError(where, f"{label}[{i}] is not a text part (type {found}); only "
                                   "{\"type\": \"text\", \"text\": ...} parts are supported", "unsupported content")
        texts.append(part["text"])
    return "".join(texts)


def _conversation(messages: list[_Message], system: str, tools: tuple[dict, ...], where: str, ordinal: int,
                  key: str, name_results: bool) -> Conversation:
    system_prompt = _system(system)
    if messages[0].role == "system":
        if system.strip():
            raise DataError(where, f"two system prompts: top-level 'system' and {key}[0]; keep one",
                            "turns out of order")
        system_prompt, messages = messages[0].text, messages[1:]
    if not messages:
        raise DataError(where, f"empty conversation: {key!r} has only a system prompt", "empty conversation")
    _check_order(messages, where, key)
    starts = [i for i, message in enumerate(messages) if message.role == "user"] + [len(messages)]
    turns = tuple(_turn(messages[a], messages[a + 1:b], where, key, name_results) for a, b in zip(starts, starts[1:]))
    return Conversation(system_prompt, turns, where, ordinal, tools)


def _check_order(messages: list[_Message], where: str, key: str) -> None:
    """Each message may follow the one before it (FOLLOWS); the last one is an assistant message."""
    previous = None
    for message in messages:
        after = previous.role if previous else None
        if message.role == "tool" and after in (None, "user"):
            raise DataError(where, f"{key}[{message.index}] is a tool result (observation) with no tool call "
                                   "before it; it must follow the assistant message (function_call) it answers",
                            "turns out of order")
        if message.role not in FOLLOWS[after]:
            expected = repr(FOLLOWS[after][0])
            if previous is not None and previous.calls:
                expected = "'tool' (the result of its call) or 'user'"
            raise DataError(where, f"turns must alternate user/assistant after an optional leading system: "
                                   f"{key}[{message.index}] is {message.role!r}, expected {expected}",
                            "turns out of order")
        previous = message
    if previous.role == "user":
        raise DataError(where, f"conversation ends with a user turn ({key}[{previous.index}]); it needs an "
                               "assistant reply", "turns out of order")
    if previous.role == "tool":
        raise DataError(where, f"conversation ends with a tool result ({key}[{previous.index}]); it needs the "
                               "assistant's reply after it", "turns out of order")


def _turn(user: _Message, replies: list[_Message], where: str, key: str, name_results: bool) -> Turn:
    """One user message and its replies (in an order _check_order accepted; the last is the assistant's)."""
    if not user.text.strip():
        raise DataError(where, f"empty user turn at {key}[{user.index}]", "empty prompt")
    steps, caller = [], None
    for message in replies[:-1]:
        if message.role == "assistant":
            caller = message
            steps.append(Step("assistant", _assistant_text(message, where, key), message.calls))
        else:
            steps.append(_tool_result(message, caller, replies, where, key, name_results))
    final = replies[-1]
    return Turn(user.text, _assistant_text(final, where, key), steps=tuple(steps), tool_calls=final.calls)


def _assistant_text(message: _Message, where: str, key: str) -> str:
    return message.text if message.calls else _check_reply(message.text, where, f"{key}[{message.index}]")


def _tool_result(message: _Message, caller: _Message, replies: list[_Message], where: str, key: str,
                 name_results: bool) -> Step:
    """A tool Step; with name_results, named after the call before it when that message made exactly one."""
    name = message.name
    if name is None and name_results and len(caller.calls) == 1:
        name = caller.calls[0].name
    if message.call_id is not None:
        ids = {call.id for reply in replies if reply.index < message.index for call in reply.calls}
        if message.call_id not in ids:
            raise DataError(where, f"{key}[{message.index}].tool_call_id {message.call_id!r} answers no tool call "
                                   "made before it in this turn", "turns out of order")
    return Step("tool", message.text, name=name, tool_call_id=message.call_id)


NORMALIZERS: dict[str, Callable[[RawRecord], Conversation]] = {
    "alpaca": alpaca, "sharegpt": sharegpt, "openai": openai,
}


def _has_value(value: object) -> bool:
    return value is not None and not (isinstance(value, (str, list, dict)) and not value)


def unused_columns(dataset_format: str, record: dict) -> list[str]:
    """Keys holding a value that the format does not read: top-level columns (`id`), and message keys of the chat
    formats as `conversations[].weight`. Call on a record its normalizer accepted."""
    known = FORMAT_COLUMNS[dataset_format]
    unused = [key for key, value in record.items() if key not in known and _has_value(value)]
    if dataset_format in MESSAGE_KEYS:
        list_key, role_key = ("conversations", "from") if dataset_format == "sharegpt" else ("messages", "role")
        by_role, extra = MESSAGE_KEYS[dataset_format], set()
        for message in record[list_key]:
            others = message.keys() - by_role.get(message[role_key], by_role[""])
            extra.update(key for key in others if _has_value(message[key]))
        unused += [f"{list_key}[].{key}" for key in sorted(extra)]
    return unused


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
