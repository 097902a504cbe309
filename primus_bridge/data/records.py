"""The normalized record every format becomes: an optional system prompt, optional tool schemas, and turns.

A turn is one user message and everything up to the next one: optional tool-call steps (assistant messages
that call tools, and the tools' results) and the final assistant message. Every assistant message is
trained (its text and its tool calls, with the token that closes it); user messages and tool results are not.

Plain (not frozen) slotted dataclasses: they are built once per record on the hot path; nothing mutates them
(truncation makes changed copies with dataclasses.replace).
"""

from dataclasses import dataclass
from typing import Literal


@dataclass(slots=True)
class RawRecord:
    """One parsed record as read from a file, or the reason it could not be parsed."""

    value: object
    where: str
    """'file:line', or 'file:line (record N)' for JSON arrays, or 'file: row N' for Parquet."""
    ordinal: int
    """Position in the whole input stream, bad records included (the split is keyed on it)."""
    problem: str | None = None
    kind: str | None = None


@dataclass(slots=True)
class ToolCall:
    """One function call an assistant message makes; `arguments` is the parsed JSON object."""

    name: str
    arguments: dict
    id: str | None = None

    def message(self) -> dict:
        """The call as chat templates take it (OpenAI / Transformers layout)."""
        call = {"type": "function", "function": {"name": self.name, "arguments": self.arguments}}
        return call | ({"id": self.id} if self.id is not None else {})


@dataclass(slots=True)
class Step:
    """A message between a turn's user message and its final reply: an assistant message that calls tools
    (role 'assistant', trained) or a tool's result (role 'tool', not trained)."""

    role: Literal["assistant", "tool"]
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    name: str | None = None
    """For a tool result: the function it answers, where the data names it."""
    tool_call_id: str | None = None
    """For a tool result: the id of the call it answers, where the data gives one."""

    def message(self) -> dict:
        out: dict = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [call.message() for call in self.tool_calls]
        if self.name is not None:
            out["name"] = self.name
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        return out


@dataclass(slots=True)
class Turn:
    user: str
    assistant: str
    """The final assistant message's text ('' when it only calls tools)."""
    context: str = ""
    """Alpaca `input`: the alpaca template shows it under '### Input:'; chat templates append it to the user text."""
    steps: tuple[Step, ...] = ()
    """Tool-call steps between the user message and the final assistant message, in order."""
    tool_calls: tuple[ToolCall, ...] = ()
    """Tool calls made by the final assistant message (a turn may end with a call)."""

    def user_text(self) -> str:
        return f"{self.user}\n\n{self.context}" if self.context else self.user

    def final(self) -> Step:
        """The final assistant message as a Step."""
        return Step("assistant", self.assistant, self.tool_calls)

    def replies(self) -> tuple[Step, ...]:
        """Everything after the user message: the steps, then the final assistant message."""
        return self.steps + (self.final(),)

    def uses_tools(self) -> bool:
        return bool(self.steps or self.tool_calls)


@dataclass(slots=True)
class Conversation:
    """A system prompt and at least one complete user -> assistant turn."""

    system: str | None
    """None when the record has no system prompt; "" when it has one that is empty (chat templates render the
    two differently: Qwen2.5 writes its default system prompt for None and an empty system block for "")."""
    turns: tuple[Turn, ...]
    where: str
    ordinal: int
    tools: tuple[dict, ...] = ()
    """Tool (function) schemas the conversation may call, each as {"type": "function", "function": {...}}."""

    def messages(self) -> list[dict]:
        """OpenAI-style messages (what `apply_chat_template` takes; tool calls in Transformers' layout)."""
        messages: list[dict] = [{"role": "system", "content": self.system}] if self.system is not None else []
        for turn in self.turns:
            messages.append({"role": "user", "content": turn.user_text()})
            messages.extend(step.message() for step in turn.replies())
        return messages

    def uses_tools(self) -> bool:
        return bool(self.tools) or any(turn.uses_tools() for turn in self.turns)
