"""What `chat` answers: --prompt texts and --input JSONL records, as conversations awaiting the model's reply.

An --input record is {"prompt": "...", "system": "..."} (system optional) or {"messages": [...], "tools": [...]}
in the openai layout the training data uses (tools optional), ending with the user message (or tool result) to
answer. Messages are read by the training data's own openai reader, so they render as training renders them.
Other keys (an "id", say) are not read and are copied to the output record. Every problem names file:line.
"""

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..data import formats
from ..data.errors import DataError
from ..data.readers import read_file
from ..data.records import Conversation, RawRecord, Turn
from .prompt import awaiting_reply

PENDING_REPLY = "(reply)"
"""Stands for the reply to come while the openai reader checks the messages (it wants a last reply)."""
ANSWERABLE = ("user", "tool")


@dataclass(frozen=True)
class ChatRequest:
    record: dict
    """What the output record starts from: the input record, or {"prompt": ...} for --prompt."""
    conversation: Conversation


def with_system(conversation: Conversation, system: str | None) -> Conversation:
    """--system for a conversation that brings no system prompt of its own."""
    if conversation.system is not None or system is None:
        return conversation
    return dataclasses.replace(conversation, system=system)


def prompt_request(prompt: str, system: str | None, where: str = "--prompt", ordinal: int = 0) -> ChatRequest:
    if not prompt.strip():
        raise DataError(where, "empty prompt", "empty prompt")
    return ChatRequest({"prompt": prompt}, Conversation(system, (Turn(prompt, ""),), where, ordinal))


def _messages_conversation(record: dict, where: str, ordinal: int) -> Conversation:
    messages = record["messages"]
    if "system" in record:
        raise DataError(where, "a messages record takes its system prompt as messages[0] "
                               "({\"role\": \"system\", ...}), not a 'system' key", "unsupported field")
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
        role = messages[-1].get("role")
        if role in formats.OPENAI_ROLES and role not in ANSWERABLE:  # an unknown role: the reader names it
            raise DataError(where, f"messages[{len(messages) - 1}] is {role!r}: the last message must be the user "
                                   "message (or tool result) the model is to answer", "turns out of order")
        messages = [*messages, {"role": "assistant", "content": PENDING_REPLY}]
    raw = RawRecord({"messages": messages, "tools": record.get("tools")}, where, ordinal)
    return awaiting_reply(formats.openai(raw))


def record_request(value: object, where: str, ordinal: int, system: str | None) -> ChatRequest:
    """One --input record as a request; DataError naming `where` when it is not one."""
    if not isinstance(value, dict):
        raise DataError(where, f"record must be a JSON object with 'prompt' or 'messages', got "
                               f"{type(value).__name__}", "wrong type")
    keys = [key for key in ("prompt", "messages") if key in value]
    if len(keys) != 1:
        found = "both" if keys else "neither"
        raise DataError(where, f"a record needs exactly one of 'prompt' (a string) or 'messages' (openai layout); "
                               f"it has {found}", "missing field")
    if keys == ["messages"]:
        return ChatRequest(value, with_system(_messages_conversation(value, where, ordinal), system))
    prompt = value["prompt"]
    own_system = value.get("system")
    for key, text in (("prompt", prompt), ("system", own_system)):
        if text is not None and not isinstance(text, str):
            raise DataError(where, f"field {key!r} must be a string, got {type(text).__name__}", "wrong type")
    request = prompt_request(prompt, own_system if own_system is not None else system, where, ordinal)
    return ChatRequest(value, request.conversation)


def read_requests(path: str | Path, system: str | None) -> Iterator[ChatRequest]:
    """The requests of an --input file, one per line, in order."""
    path = Path(path)
    if not path.is_file():
        raise DataError(str(path), "no such file; check --input", "missing file")
    for ordinal, (where, value, problem, kind) in enumerate(read_file(path)):
        if problem is not None:
            raise DataError(where, problem, kind or "bad record")
        yield record_request(value, where, ordinal, system)
