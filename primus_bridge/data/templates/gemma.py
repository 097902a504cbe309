"""Gemma 2 / Gemma 3 instruct: `<bos><start_of_turn>user\\n...<end_of_turn>\\n<start_of_turn>model\\n...`.

User and model content is trimmed. A system prompt is written as Gemma 3's template writes it: at the start
of the first user message, as given, followed by a blank line. Gemma 2's template refuses a system role, so on
records without a system prompt the text is Gemma 2's too. No tools.

The reply span is the content plus `<end_of_turn>`; the newline after it is not trained (generation stops at
`<end_of_turn>`).
"""

from ..records import Conversation
from .base import Rendered, TextBuilder, require_tokens

BOS, START, END = "<bos>", "<start_of_turn>", "<end_of_turn>"


class GemmaTemplate:
    name = "gemma"
    supports_tools = False

    def __init__(self, tokenizer):
        require_tokens(self.name, tokenizer, (BOS, START, END))

    def render(self, conversation: Conversation) -> Rendered:
        out = TextBuilder()
        out.add(BOS)
        for i, turn in enumerate(conversation.turns):
            out.start_turn()
            prefix = f"{conversation.system}\n\n" if i == 0 and conversation.system is not None else ""
            out.add(f"{START}user\n{prefix}{turn.user_text().strip()}{END}\n{START}model\n")
            out.add_response(f"{turn.assistant.strip()}{END}")
            out.add("\n")
        return out.build()
