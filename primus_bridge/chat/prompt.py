"""A conversation waiting for the model's reply -> the prompt token ids, exactly as training saw them.

Training renders a whole conversation with the run's template, tokenizes the text once (no special tokens
added) and trains each reply from its first token on; what stands before the last reply is its prompt. Here
the same template renders the conversation with that reply empty, and the text up to where the reply starts
is tokenized by the same fast-tokenizer backend the data pipeline uses (data/encode.py). Generation stops at
the token that closes a reply in the template, or at the tokenizer's EOS.
"""

import dataclasses
from dataclasses import dataclass

from pydantic import ValidationError

from ..config import ConfigError
from ..config.sections.data import DataConfig
from ..data.encode import backend_of
from ..data.errors import DataError
from ..data.records import Conversation
from ..data.templates import Template, get_template, reply_closing_token_id


def awaiting_reply(conversation: Conversation) -> Conversation:
    """The conversation with its last turn's final reply empty (the one the model is to write)."""
    last = dataclasses.replace(conversation.turns[-1], assistant="", tool_calls=())
    return dataclasses.replace(conversation, turns=conversation.turns[:-1] + (last,))


def prompt_text(template: Template, conversation: Conversation) -> str:
    """The rendered text before the last turn's final reply (through the template's generation prompt)."""
    rendered = template.render(awaiting_reply(conversation))
    return rendered.text[:rendered.responses[-1][0]]


def template_settings(template_date: str | None) -> DataConfig:
    """The data keys a template reads (data_keys), as the training run had them."""
    try:
        return DataConfig(template_date=template_date)
    except ValidationError as err:
        raise ConfigError(f"template_date: {err.errors()[0]['msg']}") from None


@dataclass
class ChatFormat:
    """A template bound to a tokenizer: prompt ids for a conversation and the tokens that end a reply."""

    template: Template
    tokenizer: object
    stop_token_ids: tuple[int, ...]

    def __post_init__(self):
        self._backend = backend_of(self.tokenizer)

    @classmethod
    def load(cls, name: str, tokenizer, template_date: str | None = None) -> "ChatFormat":
        template = get_template(name, tokenizer, template_settings(template_date))
        closing = reply_closing_token_id(template, tokenizer)
        stops = tuple(dict.fromkeys(t for t in (closing, tokenizer.eos_token_id) if t is not None))
        return cls(template, tokenizer, stops)

    def prompt_ids(self, conversation: Conversation) -> list[int]:
        if conversation.uses_tools() and not getattr(self.template, "supports_tools", False):
            raise DataError(conversation.where, f"the conversation has tools or tool calls, and the model's template "
                                                f"{self.template.name!r} cannot render them", "tools unsupported")
        return self._backend.encode(prompt_text(self.template, conversation), add_special_tokens=False).ids
