"""The normalized record every format becomes: an optional system prompt and user -> assistant turns.

Plain (not frozen) slotted dataclasses: they are built once per record on the hot path; nothing mutates them
(truncation makes changed copies with dataclasses.replace).
"""

from dataclasses import dataclass


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
class Turn:
    user: str
    assistant: str
    context: str = ""
    """Alpaca `input`: the alpaca template shows it under '### Input:'; chat templates append it to the user text."""

    def user_text(self) -> str:
        return f"{self.user}\n\n{self.context}" if self.context else self.user


@dataclass(slots=True)
class Conversation:
    """A system prompt (None when absent or empty) and at least one complete user -> assistant turn."""

    system: str | None
    turns: tuple[Turn, ...]
    where: str
    ordinal: int

    def messages(self) -> list[dict[str, str]]:
        """OpenAI-style role/content messages (what `apply_chat_template` takes)."""
        messages = [{"role": "system", "content": self.system}] if self.system is not None else []
        for turn in self.turns:
            messages.append({"role": "user", "content": turn.user_text()})
            messages.append({"role": "assistant", "content": turn.assistant})
        return messages
