"""Llama 3 Instruct: header tokens, content trimmed of surrounding whitespace, `<|eot_id|>` ends each turn."""

from ..records import Conversation
from .base import Rendered, TextBuilder, require_tokens

BOS, EOT = "<|begin_of_text|>", "<|eot_id|>"
HEADER_START, HEADER_END = "<|start_header_id|>", "<|end_header_id|>"


def _header(role: str) -> str:
    return f"{HEADER_START}{role}{HEADER_END}\n\n"


class Llama3Template:
    name = "llama3"

    def __init__(self, tokenizer):
        require_tokens(self.name, tokenizer, (BOS, HEADER_START, HEADER_END, EOT))

    def render(self, conversation: Conversation) -> Rendered:
        out = TextBuilder()
        out.add(BOS)
        if conversation.system is not None:
            out.add(f"{_header('system')}{conversation.system.strip()}{EOT}")
        for turn in conversation.turns:
            out.start_turn()
            out.add(f"{_header('user')}{turn.user_text().strip()}{EOT}{_header('assistant')}")
            out.add_response(f"{turn.assistant.strip()}{EOT}")
        return out.build()
