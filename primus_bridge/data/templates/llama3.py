"""Llama 3 Instruct (Meta-Llama-3-*-Instruct): header tokens, content trimmed of surrounding whitespace,
`<|eot_id|>` ends each turn. A system prompt, even an empty one, gets its own header; without one none is
written. Llama 3's template has no tools (see llama31.py for Llama 3.1 / 3.2 / 3.3).
"""

from ..records import Conversation
from .base import Rendered, TextBuilder, require_tokens

BOS, EOT = "<|begin_of_text|>", "<|eot_id|>"
HEADER_START, HEADER_END = "<|start_header_id|>", "<|end_header_id|>"
MARKERS = (BOS, HEADER_START, HEADER_END, EOT)


def header(role: str) -> str:
    return f"{HEADER_START}{role}{HEADER_END}\n\n"


class Llama3Template:
    name = "llama3"
    supports_tools = False

    def __init__(self, tokenizer):
        require_tokens(self.name, tokenizer, MARKERS)

    def render(self, conversation: Conversation) -> Rendered:
        out = TextBuilder()
        out.add(BOS)
        if conversation.system is not None:
            out.add(f"{header('system')}{conversation.system.strip()}{EOT}")
        for turn in conversation.turns:
            out.start_turn()
            out.add_user_header(header("user"))
            out.add(f"{turn.user_text().strip()}{EOT}{header('assistant')}")
            out.add_response(f"{turn.assistant.strip()}{EOT}")
        return out.build()
