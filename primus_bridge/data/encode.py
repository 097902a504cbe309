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


def splits_at_lone_newlines(backend: Tokenizer) -> bool:
    """Whether this tokenizer's ids of `head + rest` are its ids of `head` then those of `rest` whenever `head`
    ends in one newline after a non-space character and `rest` starts with a non-space character.

    True for byte-level BPE with GPT-2's split pattern (ByteLevel pre-tokenizer with use_regex, no prefix space)
    and no normalizer: BPE never merges across the pattern's pieces, and there the lone newline is a piece of its
    own whatever follows (`\\s+(?!\\S)` fails before a non-space, `\\s+` takes the newline; at the end of
    `head` the first takes it) while the pieces before it end the same and those from `rest` on start afresh
    (the pattern looks at most one character ahead and never behind). Added tokens split the text first; none
    may hold a newline or strip the whitespace next to it. Other tokenizers: False (every text is tokenized
    whole)."""
    spec = json.loads(backend.to_str())
    pre, model = spec.get("pre_tokenizer") or {}, spec.get("model") or {}
    gpt2_split = (pre.get("type") == "ByteLevel" and pre.get("use_regex", True)
                  and not pre.get("add_prefix_space", False))
    plain_bpe = model.get("type") == "BPE" and not model.get("dropout")
    added_ok = all("\n" not in t["content"] and not t.get("lstrip") and not t.get("rstrip")
                   for t in spec.get("added_tokens") or [])
    return gpt2_split and plain_bpe and added_ok and spec.get("normalizer") is None


class OpeningCache:
    """The tokens of the template openings seen so far (Rendered.opening: the system prompt or preamble and the
    first user header, the same for many samples), so only the rest of each sample goes through the tokenizer.

    Used only where splitting there gives the very ids and offsets of the whole text: the tokenizer qualifies
    (splits_at_lone_newlines), the opening ends in a lone newline and the first user message starts with a
    non-space character. At most LIMIT openings are kept; samples with other openings are tokenized whole."""

    LIMIT = 256

    def __init__(self, backend: Tokenizer):
        self.backend, self.enabled = backend, splits_at_lone_newlines(backend)
        self.openings: dict[str, Opening] = {}

    def split(self, rendered: Rendered) -> tuple[Opening | None, str]:
        """(the cached opening or None, the text left to tokenize)."""
        text, end = rendered.text, rendered.opening
        if not (self.enabled and 1 < end < len(text) and text[end - 1] == "\n" and not text[end - 2].isspace()
                and not text[end].isspace()):
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
