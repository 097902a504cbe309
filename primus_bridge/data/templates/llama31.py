"""Llama 3.1 / 3.2 / 3.3 Instruct: Llama 3's headers and trimming, a system header that is always written,
and tool calling as the official template writes it (with its defaults: tools in the first user message, no
built-in tools).

The system header opens with `Cutting Knowledge Date: December 2023` and `Today Date: <date>`, then the
system prompt (trimmed; none: nothing). The date is data.template_date; unset it is 26 Jul 2024, what the
Llama 3.1 and 3.3 templates write. Llama 3.2's template writes the day of rendering (strftime_now): set
data.template_date to the date your serving writes.

Tools: with tool schemas, `Environment: ipython` heads the system header, and the first user message starts
with the calling instructions and each schema as JSON (indent 4). A tool call is the JSON object
`{"name": ..., "parameters": {...}}` alone, closed by `<|eot_id|>`; the template takes one call per message
(several raise in it, so such records are refused here). A tool result is an `ipython` message holding the
result text as a JSON string (the template's `tojson`, which quotes strings).
"""

import json

from ..errors import DataError
from ..records import Conversation, Step
from .base import Rendered, TextBuilder, require_tokens
from .llama3 import BOS, EOT, MARKERS, header
from .tool_steps import require_call_only

DEFAULT_DATE = "26 Jul 2024"
KNOWLEDGE_CUTOFF = "Cutting Knowledge Date: December 2023\n"
TOOL_INSTRUCTIONS = (
    "Given the following functions, please respond with a JSON for a function call with its proper arguments "
    "that best answers the given prompt.\n\n"
    'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.'
    "Do not use variables.\n\n"
)


def _json(value: object, indent: int | None = None) -> str:
    """Jinja's `tojson` as Transformers defines it."""
    return json.dumps(value, ensure_ascii=False, indent=indent)


class Llama31Template:
    name = "llama3.1"
    supports_tools = True
    data_keys = ("template_date",)

    def __init__(self, tokenizer, template_date: str | None = None):
        require_tokens(self.name, tokenizer, MARKERS)
        self.date = template_date or DEFAULT_DATE

    def render(self, conversation: Conversation) -> Rendered:
        out = TextBuilder()
        tools = conversation.tools
        environment = "Environment: ipython\n" if tools else ""
        system = (conversation.system or "").strip()
        out.add(f"{BOS}{header('system')}{environment}{KNOWLEDGE_CUTOFF}Today Date: {self.date}\n\n{system}{EOT}")
        for index, turn in enumerate(conversation.turns):
            out.start_turn()
            schemas = "".join(f"{_json(tool, indent=4)}\n\n" for tool in tools) if index == 0 else ""
            preamble = f"{TOOL_INSTRUCTIONS}{schemas}" if schemas else ""
            out.add_user_header(header("user"))
            out.add(f"{preamble}{turn.user_text().strip()}{EOT}")
            for step in turn.replies():
                self._add_step(out, step, conversation.where)
        return out.build()

    def _add_step(self, out: TextBuilder, step: Step, where: str) -> None:
        if step.role == "tool":
            out.add(f"{header('ipython')}{_json(step.content)}{EOT}")
            return
        out.add(header("assistant"))
        if not step.tool_calls:
            out.add_response(f"{step.content.strip()}{EOT}")
            return
        if len(step.tool_calls) > 1:
            raise DataError(where, f"an assistant message makes {len(step.tool_calls)} tool calls; the llama3.1 "
                                   "chat template takes one call per message (it raises on more). Split the "
                                   "calls into one message each, with each result after its call",
                            "unsupported tool call")
        require_call_only(self.name, step, where)
        call = step.tool_calls[0]
        out.add_response(f'{{"name": "{call.name}", "parameters": {_json(call.arguments)}}}{EOT}')
