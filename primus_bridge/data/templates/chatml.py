"""ChatML (`<|im_start|>role\\n...<|im_end|>\\n`), and Qwen2's variant with its default system prompt.

The reply span is the content plus `<|im_end|>`; the newline after it is not trained (generation stops at
`<|im_end|>`).
"""

from ..records import Conversation
from .base import Rendered, TextBuilder, require_tokens

START, END = "<|im_start|>", "<|im_end|>"
QWEN2_DEFAULT_SYSTEM = "You are a helpful assistant."


class ChatMLTemplate:
    name = "chatml"
    default_system: str | None = None

    def __init__(self, tokenizer):
        require_tokens(self.name, tokenizer, (START, END))

    def render(self, conversation: Conversation) -> Rendered:
        out = TextBuilder()
        system = conversation.system if conversation.system is not None else self.default_system
        if system is not None:
            out.add(f"{START}system\n{system}{END}\n")
        for turn in conversation.turns:
            out.start_turn()
            out.add(f"{START}user\n{turn.user_text()}{END}\n{START}assistant\n")
            out.add_response(f"{turn.assistant}{END}")
            out.add("\n")
        return out.build()


class Qwen2Template(ChatMLTemplate):
    """Qwen2-Instruct: ChatML that opens with 'You are a helpful assistant.' when no system prompt is given."""

    name = "qwen2"
    default_system = QWEN2_DEFAULT_SYSTEM
