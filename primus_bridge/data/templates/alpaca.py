"""Stanford Alpaca prompt format; the reply ends with the tokenizer's EOS token.

Extra turns (alpaca `history`, or chat data) repeat the Instruction / Response blocks, separated by a blank
line; a system prompt replaces the opening sentence.
"""

from ...config import ConfigError
from ..records import Conversation
from .base import Rendered, TextBuilder, require_tokens

PREAMBLE = "Below is an instruction that describes a task. Write a response that appropriately completes the request."
PREAMBLE_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request."
)

TURN_SEPARATOR = "\n\n"


class AlpacaTemplate:
    name = "alpaca"
    supports_tools = False

    def __init__(self, tokenizer):
        if not tokenizer.eos_token:
            raise ConfigError(f"data.prompt_template: alpaca needs the tokenizer's eos_token, and "
                              f"{tokenizer.name_or_path} has none; set eos_token in its tokenizer_config.json")
        require_tokens(self.name, tokenizer, (tokenizer.eos_token,))
        self.bos, self.eos = tokenizer.bos_token or "", tokenizer.eos_token

    def render(self, conversation: Conversation) -> Rendered:
        out = TextBuilder()
        last = conversation.turns[-1]
        preamble = conversation.system or (PREAMBLE_WITH_INPUT if last.context else PREAMBLE)
        out.add(f"{self.bos}{preamble}\n\n")
        for i, turn in enumerate(conversation.turns):
            out.start_turn()
            out.add_user_header(f"{TURN_SEPARATOR if i else ''}### Instruction:\n")
            out.add(f"{turn.user}\n\n")
            if turn.context:
                out.add(f"### Input:\n{turn.context}\n\n")
            out.add("### Response:\n")
            out.add_response(f"{turn.assistant}{self.eos}")
        return out.build()
