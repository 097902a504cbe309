"""The tokenizer's own `chat_template`, rendered by `apply_chat_template` (with the record's tools).

The trained text is ONE rendering of the whole conversation. Each assistant message's span in it:

- start: where the model starts generating, i.e. where the rendering of the messages before it, with the
  generation prompt, ends;
- end: the last special token (`<|im_end|>`, `<|eot_id|>`, `</s>`, ...) within the rendering of the messages up
  to and including it, so the token that closes the reply is trained even when the template writes whitespace
  before it (Llama-2-chat writes ` reply </s>`).

Most templates render a conversation's prefix as a prefix of the whole. Some do not: Mistral v0.3 moves the
system prompt into the last user message, Qwen3 keeps a think block only on the replies after the last user
query. Such a prefix rendering is aligned with the whole one: of the places where the whole text has the
prefix rendering's ending (from its last special token on), the one that differs from it least, so the span
still starts after the generation prompt and ends with the closing token.

A record the template refuses (`raise_exception`, or a template error on its data) is a DataError naming the
record, which data.skip_bad_records skips and counts.
"""

import re

from ...config import ConfigError
from ..errors import DataError
from ..records import Conversation, Turn
from .base import Rendered

PLAIN_ENDING = 4
"""Characters that stand for a rendering's ending when it has no special token."""
PROBE = Conversation(None, (Turn("Hi", "Hello"),), "chat_template probe", 0)
NEVER = "(?!)"
"""A pattern that matches nothing (a tokenizer without special tokens)."""


def common_tail(text: str, end: int, other: str) -> int:
    """Length of the longest common suffix of text[:end] and `other` (binary search on C-level comparisons)."""
    low, high = 0, min(end, len(other))
    while low < high:
        mid = (low + high + 1) // 2
        if text[end - mid:end] == other[len(other) - mid:]:
            low = mid
        else:
            high = mid - 1
    return low


def common_head(text: str, other: str) -> int:
    """Length of the longest common prefix of text and `other`."""
    low, high = 0, min(len(text), len(other))
    while low < high:
        mid = (low + high + 1) // 2
        if text[:mid] == other[:mid]:
            low = mid
        else:
            high = mid - 1
    return low


def aligned_end(text: str, rendered: str, lowest: int, special: re.Pattern) -> int | None:
    """Where `rendered` (a rendering of the conversation's first messages) ends in `text`: its length when it is
    a prefix of text; else, among the places >= lowest where text has the ending of `rendered` (from its last
    special token on), the one where text[:place] is `rendered` with the smallest change (a system prompt moved,
    a think block dropped): the same head, a changed middle, the same tail."""
    if text.startswith(rendered) and len(rendered) >= lowest:
        return len(rendered)
    head = common_head(text, rendered)
    ends = _occurrence_ends(text, _ending(rendered, special), lowest)
    return min(ends, key=lambda end: (_change_size(text, rendered, end, head), end)) if ends else None


def _ending(rendered: str, special: re.Pattern) -> str:
    """`rendered` from its last special token on (e.g. '<|im_end|>\\n'), or its last few characters."""
    last = None
    for last in special.finditer(rendered):
        pass
    return rendered[last.start():] if last is not None else rendered[-PLAIN_ENDING:]


def _change_size(text: str, rendered: str, end: int, head: int) -> int:
    """How much changes between `rendered` and text[:end] outside their common head and common tail: the longer
    of the two changed middles (a lower bound of the edit distance between them)."""
    tail = min(common_tail(text, end, rendered), len(rendered) - head, max(end - head, 0))
    return max(len(rendered) - head - tail, abs(end - tail - head))


def _occurrence_ends(text: str, tail: str, lowest: int) -> list[int]:
    if not tail:
        return []
    ends, at = [], text.find(tail, max(lowest - len(tail), 0))
    while at >= 0:
        ends.append(at + len(tail))
        at = text.find(tail, at + 1)
    return [end for end in ends if end >= lowest]


class TokenizerChatTemplate:
    name = "tokenizer"
    supports_tools = True
    """Per instance: whether this tokenizer's chat_template mentions tools at all."""

    def __init__(self, tokenizer):
        source = getattr(tokenizer, "chat_template", None)
        if not source:
            raise ConfigError(f"data.prompt_template: 'tokenizer' needs a chat_template, and "
                              f"{tokenizer.name_or_path} has none; pick a named template (chatml, qwen2.5, ...)")
        self.tokenizer = tokenizer
        text = source if isinstance(source, str) else " ".join(source.values())
        self.supports_tools = "tool" in text
        added = [t.content for t in tokenizer.added_tokens_decoder.values() if t.special]
        special = sorted(set(added) | set(tokenizer.all_special_tokens), key=len, reverse=True)
        self.special = re.compile("|".join(re.escape(token) for token in special if token) or NEVER)
        self._check_replies_close()

    def render(self, conversation: Conversation) -> Rendered:
        messages, where = conversation.messages(), conversation.where
        tools = list(conversation.tools) or None
        text = self._apply(messages, tools, where)
        responses, response_turns, turn_starts = [], [], [self._first_turn_start(text, messages, tools)]
        cursor = message_end = 0
        for index, message in enumerate(messages):
            if message["role"] == "user" and responses:
                turn_starts.append(message_end)
            if message["role"] != "assistant":
                continue
            start = self._locate(text, self._apply(messages[:index], tools, where, True), cursor, where)
            through = self._apply(messages[:index + 1], tools, where) if index + 1 < len(messages) else text
            message_end = self._locate(text, through, start, where)
            cursor = self._closing_end(text, start, message_end, where)
            responses.append((start, cursor))
            response_turns.append(len(turn_starts) - 1)
        return Rendered(text, responses, turn_starts, response_turns)

    def _apply(self, messages: list[dict], tools: list[dict] | None, where: str,
               generation_prompt: bool = False) -> str:
        try:
            return self.tokenizer.apply_chat_template(messages, tools=tools, tokenize=False,
                                                      add_generation_prompt=generation_prompt)
        except Exception as err:  # noqa: BLE001 - jinja raise_exception and template errors on the data alike
            raise DataError(where, f"the tokenizer's chat_template refuses this record: {err}",
                            "template error") from None

    def _locate(self, text: str, rendered: str, lowest: int, where: str) -> int:
        end = aligned_end(text, rendered, lowest, self.special)
        if end is None:
            raise DataError(where, "the tokenizer's chat_template renders this conversation's messages so "
                                   "differently alone and in the whole that the reply cannot be found; use a named "
                                   "template", "template error")
        return end

    def _closing_end(self, text: str, start: int, region_end: int, where: str) -> int:
        """The end of the last special token between start and region_end (the token that closes the reply)."""
        last = None
        for last in self.special.finditer(text, start, region_end):
            pass
        end = last.end() if last is not None else start + len(text[start:region_end].rstrip())
        if end <= start:
            raise DataError(where, "the tokenizer's chat_template writes nothing for an assistant message",
                            "template error")
        return end

    def _first_turn_start(self, text: str, messages: list[dict], tools: list[dict] | None) -> int:
        """Where the first user message starts: after the system prompt (0 when the template cannot render the
        system prompt alone, e.g. Llama 3.1 with tools)."""
        if messages[0]["role"] != "system":
            return 0
        try:
            system = self.tokenizer.apply_chat_template(messages[:1], tools=tools, tokenize=False)
        except Exception:  # noqa: BLE001 - a template that needs a user message
            return 0
        return aligned_end(text, system, 0, self.special) or 0

    def _check_replies_close(self) -> None:
        """A template that ends a reply with no special token trains a model that never stops."""
        try:
            rendered = self.render(PROBE)
        except DataError:
            return  # a template that refuses a bare Hi / Hello exchange is judged record by record
        start, end = rendered.responses[-1]
        if not self.special.search(rendered.text, start, end):
            raise ConfigError(f"data.prompt_template: the chat_template of {self.tokenizer.name_or_path} ends an "
                              f"assistant reply with no special token ({rendered.text[start:end]!r}), so the model "
                              "would never learn to stop; use a named template")
