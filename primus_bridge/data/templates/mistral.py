"""Mistral Instruct v0.1 / v0.2 (tokenizer v1): `<s> [INST] user [/INST] reply</s> [INST] ...`.

Content is written as given (not trimmed). A system prompt goes at the start of the first user message,
followed by a blank line, as the official template (and Mistral's reference tokenizer) write it. The reply
span starts at the space before the reply: the model generates it as part of the reply's first token.
"""

from ..records import Conversation
from .base import Rendered, TextBuilder, require_tokens

BOS, EOS = "<s>", "</s>"


class MistralTemplate:
    name = "mistral"
    supports_tools = False

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
            out.add(f" [INST] {user} [/INST]")
            out.add_response(f" {turn.assistant}{EOS}")
        return out.build()
