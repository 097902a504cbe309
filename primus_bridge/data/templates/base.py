"""What a prompt template produces: the full text, the character spans of each assistant message, and which
turn each belongs to."""

from dataclasses import dataclass, field
from typing import Protocol

from ...config import ConfigError
from ..records import Conversation


@dataclass(slots=True)
class Rendered:
    text: str
    responses: list[tuple[int, int]]
    """Character span [start, end) of each assistant message (what the model generates after the generation
    prompt) plus the end-of-turn / EOS token that closes it."""
    turn_starts: list[int]
    """Character offset where each user turn begins (for mask_history with train_on_prompt)."""
    response_turns: list[int] = field(default_factory=list)
    """The turn (index into turn_starts) of each response; a turn with tool steps has several responses."""
    opening: int = field(default=0, compare=False)
    """Length of the template's opening text (everything before the first user message), which many samples
    share; 0 when the template does not mark it. A hint, not part of the rendering: the encoder may reuse the
    opening's tokens (encode.py: OpeningCache)."""


@dataclass(slots=True)
class TextBuilder:
    parts: list[str] = field(default_factory=list)
    length: int = 0
    responses: list[tuple[int, int]] = field(default_factory=list)
    turn_starts: list[int] = field(default_factory=list)
    response_turns: list[int] = field(default_factory=list)
    opening: int = 0

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.length += len(text)

    def add_response(self, text: str) -> None:
        """A trained span: an assistant message of the turn last started (with start_turn)."""
        start = self.length
        self.add(text)
        self.responses.append((start, self.length))
        self.response_turns.append(len(self.turn_starts) - 1)

    def start_turn(self) -> None:
        self.turn_starts.append(self.length)

    def add_user_header(self, text: str) -> None:
        """The text before a user message (its role header); the first one closes the template's opening, the text
        shared by the samples up to their first user message (Rendered.opening)."""
        self.add(text)
        if len(self.turn_starts) == 1:
            self.opening = self.length

    def build(self) -> Rendered:
        return Rendered("".join(self.parts), self.responses, self.turn_starts, self.response_turns, self.opening)


class Template(Protocol):
    name: str
    supports_tools: bool
    """Whether the template renders tool schemas, tool calls and tool results (records with tools are refused
    for templates that do not)."""

    def render(self, conversation: Conversation) -> Rendered:
        """The conversation as the model family's exact text, with reply spans."""


def require_tokens(name: str, tokenizer, tokens: tuple[str, ...]) -> None:
    """Each marker the template writes must be one token of this tokenizer, or the model never learns to stop."""
    missing = [t for t in tokens if len(tokenizer.encode(t, add_special_tokens=False)) != 1]
    if missing:
        raise ConfigError(
            f"data.prompt_template: template {name!r} writes {', '.join(missing)}, which this tokenizer "
            f"({tokenizer.name_or_path}) does not have as single tokens; pick the template of the model's "
            "family, or prompt_template: tokenizer to use the tokenizer's own chat_template")
