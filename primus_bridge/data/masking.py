"""From reply character spans to trained label positions.

The rendered text is tokenized once, as a whole (or as its cached template opening plus the rest where that gives
the same ids and offsets: encode.py, OpeningCache), so the ids equal `tokenizer(text, add_special_tokens=False)`
exactly; each span's first and last character are then mapped to tokens with `Encoding.char_to_token`. A
token that straddles a span edge counts as trained, so no character of a reply goes untrained.

Labels are shifted: position i is trained when token i+1 is, so a trained token range [a, b) becomes the
label positions [max(a, 1) - 1, b - 1).
"""

from .templates import Rendered


def trained_char_spans(rendered: Rendered, train_on_prompt: bool, mask_history: bool) -> list[tuple[int, int]]:
    """Every assistant message, or with mask_history those of the last turn (its tool-calling steps and its
    final reply); with train_on_prompt, everything up to the last reply's end (from the last turn's start with
    mask_history)."""
    if train_on_prompt:
        start = rendered.turn_starts[-1] if mask_history else 0
        return [(start, rendered.responses[-1][1])]
    if mask_history:
        last_turn = rendered.response_turns[-1]
        return [span for span, turn in zip(rendered.responses, rendered.response_turns) if turn == last_turn]
    return list(rendered.responses)


def _covering_token(encoding, positions: range) -> int | None:
    """The token of the first character in `positions` that some token covers."""
    for pos in positions:
        token = encoding.char_to_token(pos)
        if token is not None:
            return token
    return None


def token_range(encoding, start: int, end: int) -> tuple[int, int] | None:
    """Tokens [first, last + 1) covering characters [start, end), or None for an empty span."""
    if end <= start:
        return None
    first = encoding.char_to_token(start)  # the usual case: a token covers the edge character itself
    if first is None:
        first = _covering_token(encoding, range(start + 1, end))
    last = encoding.char_to_token(end - 1)
    if last is None:
        last = _covering_token(encoding, range(end - 2, start - 1, -1))
    if first is None or last is None:
        return None
    return first, last + 1


def label_spans(encoding, char_spans: list[tuple[int, int]], n_tokens: int) -> list[tuple[int, int]]:
    """Label positions [s, e) of a document of n_tokens tokens (spans past n_tokens are cut)."""
    spans = []
    for start, end in char_spans:
        tokens = token_range(encoding, start, end)
        if tokens is None:
            continue
        first, stop = max(tokens[0], 1) - 1, min(tokens[1], n_tokens) - 1
        if stop > first:
            spans.append((first, stop))
    return spans
