"""Fit a sample into seq_length tokens, cutting the prompt side first and never the start of a reply.

Order: drop the oldest turns (keeping the system prompt); then shorten the last turn's input, then its
instruction, from their ends; only when the shortest prompt plus the reply is still too long, cut the end
of the reply (its start is kept). Each sample that was cut reports which step made it fit.
"""

from collections.abc import Callable
from dataclasses import replace

from .records import Conversation
from .templates import Rendered, Template

TRUNCATION_KINDS = ("oldest turns", "prompt", "response")
SHORTEN_ATTEMPTS = 6


class Fitted:
    """A sample's final rendering and encoding, and which truncation step (if any) it took."""

    __slots__ = ("rendered", "encoding", "kind")

    def __init__(self, rendered: Rendered, encoding, kind: str | None):
        self.rendered, self.encoding, self.kind = rendered, encoding, kind


def fit(conversation: Conversation, fitted: Fitted, template: Template, encode: Callable[[str], object],
        seq_length: int) -> Fitted:
    """`fitted` unchanged when it fits; otherwise re-rendered shorter (see the module docstring)."""
    if len(fitted.encoding) <= seq_length:
        return fitted
    while len(conversation.turns) > 1:
        conversation = replace(conversation, turns=conversation.turns[1:])
        fitted = _render(conversation, template, encode, "oldest turns")
        if len(fitted.encoding) <= seq_length:
            return fitted
    for field in ("context", "user"):
        conversation, fitted = _shorten(conversation, field, fitted, template, encode, seq_length)
        if len(fitted.encoding) <= seq_length:
            return Fitted(fitted.rendered, fitted.encoding, "prompt")
    return Fitted(fitted.rendered, fitted.encoding, "response")


def _render(conversation: Conversation, template: Template, encode, kind: str) -> Fitted:
    rendered = template.render(conversation)
    return Fitted(rendered, encode(rendered.text), kind)


def _shorten(conversation: Conversation, field: str, fitted: Fitted, template: Template, encode,
             seq_length: int) -> tuple[Conversation, Fitted]:
    """Cut the last turn's `field` from its end until the sample fits or the field is empty."""
    for attempt in range(SHORTEN_ATTEMPTS):
        text = getattr(conversation.turns[-1], field)
        overflow = len(fitted.encoding) - seq_length
        if overflow <= 0 or not text:
            break
        piece = encode(text)
        keep = max(len(piece.ids) - overflow - 4 * attempt, 0)
        cut = piece.offsets[keep][0] if keep < len(piece.ids) else len(text)
        last = replace(conversation.turns[-1], **{field: text[:cut]})
        conversation = replace(conversation, turns=conversation.turns[:-1] + (last,))
        fitted = _render(conversation, template, encode, "prompt")
    return conversation, fitted
