"""Prompt templates by name: each renders a Conversation as its model family's exact text."""

from ...config import ConfigError
from .alpaca import AlpacaTemplate
from .base import Rendered, Template
from .chatml import ChatMLTemplate, Qwen2Template
from .llama3 import Llama3Template
from .mistral import MistralTemplate
from .tokenizer_chat import TokenizerChatTemplate

TEMPLATES = {
    "alpaca": AlpacaTemplate,
    "chatml": ChatMLTemplate,
    "qwen2": Qwen2Template,
    "llama3": Llama3Template,
    "mistral": MistralTemplate,
    "tokenizer": TokenizerChatTemplate,
}


def get_template(name: str, tokenizer) -> Template:
    if name not in TEMPLATES:
        raise ConfigError(f"data.prompt_template: unknown template {name!r}; use one of {', '.join(TEMPLATES)}")
    return TEMPLATES[name](tokenizer)


__all__ = ["TEMPLATES", "Rendered", "Template", "get_template"]
