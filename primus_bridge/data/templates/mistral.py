"""Mistral Instruct v0.1 / v0.2: `<s>[INST] user [/INST]reply</s>[INST] ...`.

Mistral's own template has no system role; a system prompt goes before the first user message, followed by
a blank line (the usual convention for these models).
"""

from ..records import Conversation
from .base import Rendered, TextBuilder, require_tokens

BOS, EOS = "<s>", "</s>"


class MistralTemplate:
    name = "mistral"

    def __init__(self, tokenizer):
        require_tokens(self.name, tokenizer, (BOS, EOS))

    def render(self, conversation: Conversation) -> Rendered:
        out = TextBuilder()
        out.add(BOS)
        for i, turn in enumerate(conversation.turns):
            out.start_turn()
            user = turn.user_text()
            if i == 0 and conversation.system is not None:
                user = f"{conversation.system}\n\n{user}"
            out.add(f"[INST] {user} [/INST]")
            out.add_response(f"{turn.assistant}{EOS}")
        return out.build()
