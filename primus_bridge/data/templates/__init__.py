"""Prompt templates by name: each renders a Conversation as its model family's exact text."""

from ...config import ConfigError
from ..records import Conversation, Turn
from .alpaca import AlpacaTemplate
from .base import Rendered, Template
from .chatml import ChatMLTemplate, Qwen2Template
from .gemma import GemmaTemplate
from .llama3 import Llama3Template
from .llama31 import Llama31Template
from .mistral import MistralTemplate
from .mistral_v3 import MistralV3Template
from .qwen import Qwen3Template, Qwen25Template
from .tokenizer_chat import TokenizerChatTemplate

TEMPLATES = {
    "alpaca": AlpacaTemplate,
    "chatml": ChatMLTemplate,
    "qwen2": Qwen2Template,
    "qwen2.5": Qwen25Template,
    "qwen3": Qwen3Template,
    "llama3": Llama3Template,
    "llama3.1": Llama31Template,
    "mistral": MistralTemplate,
    "mistral-v3": MistralV3Template,
    "gemma": GemmaTemplate,
    "tokenizer": TokenizerChatTemplate,
}


def get_template(name: str, tokenizer, data=None) -> Template:
    """Template `name` for `tokenizer`; `data` (the run's DataConfig) gives the keys a template reads, its
    `data_keys` (llama3.1: data.template_date)."""
    if name not in TEMPLATES:
        raise ConfigError(f"data.prompt_template: unknown template {name!r}; use one of {', '.join(TEMPLATES)}")
    template = TEMPLATES[name]
    keys = getattr(template, "data_keys", ()) if data is not None else ()
    return template(tokenizer, **{key: getattr(data, key) for key in keys})


def reply_closing_token_id(template: Template, tokenizer) -> int:
    """The token that closes each reply in `template` (what generation must stop at): the last token of a
    rendered reply span."""
    rendered = template.render(Conversation(None, (Turn("Hi", "Hello"),), "closing-token probe", 0))
    encoding = tokenizer(rendered.text, add_special_tokens=False, return_offsets_mapping=True)
    last = encoding.char_to_token(rendered.responses[-1][1] - 1)
    return encoding["input_ids"][last] if last is not None else tokenizer.eos_token_id


__all__ = ["TEMPLATES", "Rendered", "Template", "get_template", "reply_closing_token_id"]
