"""Tokenize rendered samples in batches with the fast tokenizer and attach their trained label spans."""

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


class SampleEncoder:
    """tokenize() is one batched call into the Rust tokenizer (it releases the GIL, so the pipeline runs it in
    a worker thread while Python prepares the next chunk); finish() fits, masks and packages the samples."""

    def __init__(self, tokenizer, template: Template, data: DataConfig):
        self.batch_backend, self.single_backend = backend_of(tokenizer), backend_of(tokenizer)
        self.template, self.data = template, data

    def encode_one(self, text: str):
        return self.single_backend.encode(text, add_special_tokens=False)

    def tokenize(self, batch: list[tuple[Conversation, Rendered]]) -> list:
        return self.batch_backend.encode_batch([rendered.text for _, rendered in batch], add_special_tokens=False)

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
