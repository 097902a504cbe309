"""The tokenizer's own `chat_template`, rendered by `apply_chat_template`.

Reply spans come from rendering growing prefixes of the conversation: turn k's reply starts where the
prompt of messages[:user k] with add_generation_prompt=True ends, and runs to the end of the reply text
plus a special token that directly follows it (the end-of-turn marker). Templates whose rendering of a
prefix is not a prefix of the full rendering cannot be masked exactly and are refused.
"""

from ...config import ConfigError
from ..errors import DataError
from ..records import Conversation
from .base import Rendered


class TokenizerChatTemplate:
    name = "tokenizer"

    def __init__(self, tokenizer):
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError(f"data.prompt_template: 'tokenizer' needs a chat_template, and "
                              f"{tokenizer.name_or_path} has none; pick a named template (chatml, llama3, ...)")
        self.tokenizer = tokenizer
        added = [t.content for t in tokenizer.added_tokens_decoder.values() if t.special]
        self.special = sorted(set(added) | set(tokenizer.all_special_tokens), key=len, reverse=True)

    def _apply(self, messages: list[dict], where: str, generation_prompt: bool = False) -> str:
        try:
            return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                      add_generation_prompt=generation_prompt)
        except Exception as err:  # noqa: BLE001 - jinja raise_exception and template bugs alike
            raise DataError(where, f"the tokenizer's chat_template failed: {err}", "template error") from None

    def render(self, conversation: Conversation) -> Rendered:
        messages, where = conversation.messages(), conversation.where
        first = 1 if conversation.system is not None else 0
        text = self._apply(messages, where)
        responses, turn_starts = [], []
        for k, turn in enumerate(conversation.turns):
            user_at = first + 2 * k
            turn_starts.append(len(self._apply(messages[:user_at], where)) if user_at else 0)
            prompt = self._apply(messages[:user_at + 1], where, generation_prompt=True)
            if not text.startswith(prompt):
                raise ConfigError("data.prompt_template: the tokenizer's chat_template renders a conversation "
                                  "prefix differently from the whole, so the trained span cannot be found; "
                                  "use a named template (chatml, llama3, qwen2, mistral, alpaca)")
            responses.append((len(prompt), self._reply_end(text, turn.assistant, len(prompt), where)))
        return Rendered(text, responses, turn_starts)

    def _reply_end(self, text: str, reply: str, start: int, where: str) -> int:
        """End of the reply as written (or trimmed, for templates that trim) plus a directly following marker."""
        for content in (reply, reply.strip()):
            at = text.find(content, start)
            if at >= 0:
                end = at + len(content)
                marker = next((t for t in self.special if text.startswith(t, end)), "")
                return end + len(marker)
        raise DataError(where, "the tokenizer's chat_template changes the assistant text, so its span cannot be "
                               "found; use a named template", "template error")
