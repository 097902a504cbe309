"""ChatML (`<|im_start|>role\\n...<|im_end|>\\n`), and Qwen2-Instruct's variant with its default system prompt.

Text is written as given (no trimming). The reply span is what the model generates after the generation
prompt `<|im_start|>assistant\\n`, through `<|im_end|>`; the newline after it is not trained (generation stops
at `<|im_end|>`). A system prompt that is present but empty still gets its (empty) system block, as in the
official templates. Neither template renders tools (Qwen2.5 and Qwen3 do: qwen.py).
"""

from ..records import Conversation
from .base import Rendered, TextBuilder, require_tokens

START, END = "<|im_start|>", "<|im_end|>"
GENERATION_PROMPT = f"{START}assistant\n"
QWEN2_DEFAULT_SYSTEM = "You are a helpful assistant."


def message(role: str, text: str) -> str:
    """One complete ChatML message and the newline after it."""
    return f"{START}{role}\n{text}{END}\n"


class ChatMLTemplate:
    name = "chatml"
    supports_tools = False
    default_system: str | None = None

    def __init__(self, tokenizer):
        require_tokens(self.name, tokenizer, (START, END))

    def render(self, conversation: Conversation) -> Rendered:
        out = TextBuilder()
        system = conversation.system if conversation.system is not None else self.default_system
        if system is not None:
            out.add(message("system", system))
        for turn in conversation.turns:
            out.start_turn()
            out.add_user_header(f"{START}user\n")
            out.add(f"{turn.user_text()}{END}\n{GENERATION_PROMPT}")
            out.add_response(f"{turn.assistant}{END}")
            out.add("\n")
        return out.build()


class Qwen2Template(ChatMLTemplate):
    """Qwen2-Instruct: ChatML that opens with 'You are a helpful assistant.' when no system prompt is given."""

    name = "qwen2"
    default_system = QWEN2_DEFAULT_SYSTEM
