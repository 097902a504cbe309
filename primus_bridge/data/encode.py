"""Tokenize rendered samples in batches with the fast tokenizer and attach their trained label spans."""

import json
from dataclasses import dataclass

from tokenizers import Tokenizer

from ..config.sections.data import DataConfig
from .masking import label_spans, trained_char_spans
from .records import Conversation
from .templates import Rendered, Template
from .truncate import Fitted, fit


@dataclass(slots=True)
class EncodedSample:
    ids: list[int]
    spans: list[tuple[int, int]]
    """Label positions [start, end) that are trained; empty means nothing to train (the sample is dropped)."""
    truncation: str | None
    ordinal: int
    where: str


def backend_of(tokenizer) -> Tokenizer:
    """A private copy of the fast tokenizer's backend with truncation and padding off (ids are never cut here)."""
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_truncation()
    backend.no_padding()
    return backend


@dataclass(slots=True)
class Opening:
    """A template opening's encoding, ids and length in characters."""

    encoding: object
    ids: list[int]
    chars: int


class Joined:
    """The encoding of opening + rest, built from the two encodings: the ids one after the other, and
    char_to_token answering as the encoding of the whole text would (the rest's positions shifted)."""

    __slots__ = ("opening", "rest", "chars", "tokens", "ids")

    def __init__(self, opening: Opening, rest):
        self.opening, self.rest = opening, rest
        self.chars, self.tokens = opening.chars, len(opening.ids)
        self.ids = opening.ids + rest.ids

    def __len__(self) -> int:
        return len(self.ids)

    def char_to_token(self, pos: int) -> int | None:
        if pos < self.chars:
            return self.opening.encoding.char_to_token(pos)
        token = self.rest.char_to_token(pos - self.chars)
        return None if token is None else token + self.tokens


def _after_lone_newline(text: str, end: int) -> bool:
    return 1 < end < len(text) and text[end - 1] == "\n" and not text[end - 2].isspace() and not text[end].isspace()


def _after_newline(text: str, end: int) -> bool:
    return 0 < end < len(text) and text[end - 1] == "\n" and not text[end].isspace()


NEWLINE_RUN_PATTERNS = {
    "llama3": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+",
    "qwen2": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
             r"|\s*[\r\n]+|\s+(?!\S)|\s+",
}
"""The split patterns of Llama 3.x's and Qwen 2 / 2.5 / 3's tokenizer.json (Split, Isolated, then ByteLevel without
its own regex), character for character."""


def _split_pattern(pre: dict) -> str | None:
    """The regex of a [Split(regex, Isolated), ByteLevel(no regex, no prefix space)] pre-tokenizer, else None."""
    steps = pre.get("pretokenizers") or [] if pre.get("type") == "Sequence" else []
    if len(steps) != 2:
        return None
    split, byte_level = steps
    if (split.get("type") != "Split" or split.get("behavior") != "Isolated" or split.get("invert")
            or byte_level.get("type") != "ByteLevel" or byte_level.get("use_regex", True)
            or byte_level.get("add_prefix_space", False)):
        return None
    return (split.get("pattern") or {}).get("Regex")


def opening_split_rule(backend: Tokenizer):
    r"""Where this tokenizer's ids of `text` are its ids of `text[:end]` then those of `text[end:]`: a function of
    (text, end) -> bool, or None where it cannot be told (every text is then tokenized whole). Both rules need
    plain BPE, no added token holding a newline or stripping the whitespace next to it (added tokens split the
    text first), and `text[end]` not whitespace. BPE never merges across the split pattern's pieces, so the ids
    agree wherever the pieces do: the pieces before `end` end the same and those from `end` on start afresh (the
    patterns look at most one character ahead and never behind), provided a piece ends at `end` in the whole text:

    - GPT-2's pattern (ByteLevel with use_regex), no normalizer: `text[:end]` ends in one newline after a
      non-space character. That newline is a piece of its own whatever follows (`\s+(?!\S)` fails before a
      non-space and `\s+` takes the newline; at the end of `text[:end]` the first takes it). Two newlines would
      not do: before a non-space they are two pieces, at the end of the text one.
    - Llama 3's and Qwen 2's pattern (NEWLINE_RUN_PATTERNS), normalizer none or NFC: `text[:end]` ends in a
      newline. The whitespace run ending there is one piece in both (`\s*[\r\n]+` comes before the other
      whitespace alternatives and stops at the run's last newline before a non-space), or the newlines close a
      punctuation piece (` ?[^\s\p{L}\p{N}]+[\r\n]*`) in both; no alternative crosses a newline into what
      follows. NFC composes nothing with a newline, which also stops reordering, so it normalizes both sides
      alone as it does the whole.
    """
    spec = json.loads(backend.to_str())
    pre, model = spec.get("pre_tokenizer") or {}, spec.get("model") or {}
    plain_bpe = model.get("type") == "BPE" and not model.get("dropout")
    added_ok = all("\n" not in t["content"] and not t.get("lstrip") and not t.get("rstrip")
                   for t in spec.get("added_tokens") or [])
    if not (plain_bpe and added_ok):
        return None
    normalizer = spec.get("normalizer")
    if (pre.get("type") == "ByteLevel" and pre.get("use_regex", True) and not pre.get("add_prefix_space", False)
            and normalizer is None):
        return _after_lone_newline
    if _split_pattern(pre) in NEWLINE_RUN_PATTERNS.values() and (normalizer is None or normalizer == {"type": "NFC"}):
        return _after_newline
    return None


class OpeningCache:
    """The tokens of the template openings seen so far (Rendered.opening: the system prompt or preamble and the
    first user header, the same for many samples), so only the rest of each sample goes through the tokenizer.

    Used only where splitting there gives the very ids and offsets of the whole text (opening_split_rule: the
    tokenizer's split pattern, the opening's last characters and the first user message's first). At most LIMIT
    openings are kept; samples with other openings are tokenized whole."""

    LIMIT = 256

    def __init__(self, backend: Tokenizer):
        self.backend, self.rule = backend, opening_split_rule(backend)
        self.openings: dict[str, Opening] = {}

    @property
    def enabled(self) -> bool:
        return self.rule is not None

    def split(self, rendered: Rendered) -> tuple[Opening | None, str]:
        """(the cached opening or None, the text left to tokenize)."""
        text, end = rendered.text, rendered.opening
        if self.rule is None or not self.rule(text, end):
            return None, text
        head = text[:end]
        opening = self.openings.get(head)
        if opening is None:
            if len(self.openings) >= self.LIMIT:
                return None, text
            encoding = self.backend.encode(head, add_special_tokens=False)
            opening = self.openings[head] = Opening(encoding, encoding.ids, end)
        return opening, text[end:]


class SampleEncoder:
    """tokenize() is one batched call into the Rust tokenizer (it releases the GIL, so the pipeline runs it in
    a worker thread while Python prepares the next chunk); finish() fits, masks and packages the samples."""

    def __init__(self, tokenizer, template: Template, data: DataConfig):
        self.batch_backend, self.single_backend = backend_of(tokenizer), backend_of(tokenizer)
        self.template, self.data = template, data
        self.openings = OpeningCache(self.batch_backend)

    def encode_one(self, text: str):
        return self.single_backend.encode(text, add_special_tokens=False)

    def tokenize(self, batch: list[tuple[Conversation, Rendered]]) -> list:
        """Each sample's encoding (a Joined one where its opening's tokens are cached)."""
        openings, texts = zip(*[self.openings.split(rendered) for _, rendered in batch]) if batch else ((), ())
        encodings = self.batch_backend.encode_batch(list(texts), add_special_tokens=False)
        return [enc if opening is None else Joined(opening, enc) for opening, enc in zip(openings, encodings)]

    def finish(self, batch: list[tuple[Conversation, Rendered]], encodings: list) -> list[EncodedSample]:
        """Over-long samples are re-rendered shorter one by one (see truncate.py)."""
        return [self._sample(conv, rendered, enc) for (conv, rendered), enc in zip(batch, encodings)]

    def encode(self, batch: list[tuple[Conversation, Rendered]]) -> list[EncodedSample]:
        return self.finish(batch, self.tokenize(batch))

    def _sample(self, conversation: Conversation, rendered: Rendered, encoding) -> EncodedSample:
        seq_length, kind = self.data.seq_length, None
        if len(encoding) > seq_length:
            fitted = fit(conversation, Fitted(rendered, encoding, None), self.template, self.encode_one, seq_length)
            rendered, encoding, kind = fitted.rendered, fitted.encoding, fitted.kind
        ids = encoding.ids
        if len(ids) > seq_length:
            ids = ids[:seq_length]
        char_spans = trained_char_spans(rendered, self.data.train_on_prompt, self.data.mask_history)
        spans = label_spans(encoding, char_spans, len(ids))
        return EncodedSample(ids, spans, kind, conversation.ordinal, conversation.where)
