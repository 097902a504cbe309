"""Qwen2.5-Instruct and Qwen3: ChatML with tools, and Qwen3's `<think>` blocks, written as their official
chat templates write them.

Tools: the schemas go into the system block (one JSON object a line between `<tools>` and `</tools>`); an
assistant message writes each call as `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`; tool
results are user-role messages of `<tool_response>` blocks, consecutive results sharing one message. JSON is
written as the templates' `tojson` writes it: json.dumps with ensure_ascii=False and default separators.

Qwen2.5 opens with "You are Qwen, created by Alibaba Cloud. You are a helpful assistant." when no system
prompt is given; Qwen3 has no default. Qwen3 splits an assistant message's reasoning from its content at
`</think>`; replies after the last user query keep their reasoning in `<think>\\n...\\n</think>\\n\\n` (the last
message always gets the block, empty when it has no reasoning), earlier replies lose it. Each trained span is
what the model generates after `<|im_start|>assistant\\n` through `<|im_end|>`, the think block included.
"""

import json

from ..records import Conversation, Step, ToolCall
from .base import Rendered, TextBuilder, require_tokens
from .chatml import END, GENERATION_PROMPT, START, message

QWEN25_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
TOOLS_INTRO = ("# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
               "You are provided with function signatures within <tools></tools> XML tags:\n<tools>")
TOOLS_OUTRO = ("\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
               "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
               "<args-json-object>}\n</tool_call>")
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
TOOL_RESPONSE_OPEN, TOOL_RESPONSE_CLOSE = "<tool_response>", "</tool_response>"


def tojson(value) -> str:
    """What the chat templates' `tojson` filter writes."""
    return json.dumps(value, ensure_ascii=False)


def tools_text(tools: tuple[dict, ...]) -> str:
    return TOOLS_INTRO + "".join(f"\n{tojson(tool)}" for tool in tools) + TOOLS_OUTRO


def tool_call_text(call: ToolCall) -> str:
    return f'<tool_call>\n{{"name": "{call.name}", "arguments": {tojson(call.arguments)}}}\n</tool_call>'


def tool_calls_text(calls: tuple[ToolCall, ...], content: str) -> str:
    """The calls after an assistant message's text, each on its own line (the first one right after the
    generation prompt when the message has no text)."""
    return "".join(("\n" if i or content else "") + tool_call_text(call) for i, call in enumerate(calls))


def tool_result(step: Step, opens: bool, closes: bool) -> str:
    text = f"\n{TOOL_RESPONSE_OPEN}\n{step.content}\n{TOOL_RESPONSE_CLOSE}"
    return (f"{START}user" if opens else "") + text + (f"{END}\n" if closes else "")


class Qwen25Template:
    name = "qwen2.5"
    supports_tools = True

    def __init__(self, tokenizer):
        require_tokens(self.name, tokenizer, (START, END))

    def render(self, conversation: Conversation) -> Rendered:
        out = TextBuilder()
        out.add(self.system_block(conversation))
        query_turn = self.last_query_turn(conversation)
        last_turn = len(conversation.turns) - 1
        for index, turn in enumerate(conversation.turns):
            out.start_turn()
            out.add_user_header(f"{START}user\n")
            out.add(f"{turn.user_text()}{END}\n")
            after_query = query_turn is not None and index >= query_turn
            replies = turn.replies()
            for i, step in enumerate(replies):
                if step.role == "tool":
                    opens, closes = i == 0 or replies[i - 1].role != "tool", replies[i + 1].role != "tool"
                    out.add(tool_result(step, opens, closes))
                    continue
                final = index == last_turn and i == len(replies) - 1
                out.add(GENERATION_PROMPT)
                out.add_response(self.reply(step, after_query, final) + END)
                out.add("\n")
        return out.build()

    def system_block(self, conversation: Conversation) -> str:
        system = conversation.system if conversation.system is not None else QWEN25_DEFAULT_SYSTEM
        if conversation.tools:
            return f"{START}system\n{system}\n\n{tools_text(conversation.tools)}{END}\n"
        return message("system", system)

    def last_query_turn(self, conversation: Conversation) -> int | None:
        """The turn from which replies keep their reasoning: none in Qwen2.5 (its template has no think blocks)."""
        return None

    def reply(self, step: Step, after_query: bool, final: bool) -> str:
        """An assistant message's generated text, without the `<|im_end|>` that closes it; `after_query`: it
        comes after the last user query; `final`: it is the conversation's last message."""
        return step.content + tool_calls_text(step.tool_calls, step.content)


class Qwen3Template(Qwen25Template):
    name = "qwen3"

    def system_block(self, conversation: Conversation) -> str:
        system = conversation.system
        if conversation.tools:
            opening = f"{system}\n\n" if system is not None else ""
            return f"{START}system\n{opening}{tools_text(conversation.tools)}{END}\n"
        return message("system", system) if system is not None else ""

    def last_query_turn(self, conversation: Conversation) -> int | None:
        """The last turn whose user message is a query, not a `<tool_response>` block; None when there is none
        (then no reply keeps a think block)."""
        for t in range(len(conversation.turns) - 1, -1, -1):
            text = conversation.turns[t].user_text()
            if not (text.startswith(TOOL_RESPONSE_OPEN) and text.endswith(TOOL_RESPONSE_CLOSE)):
                return t
        return None

    def reply(self, step: Step, after_query: bool, final: bool) -> str:
        reasoning, content = "", step.content
        if THINK_CLOSE in content:
            before, after = content.split(THINK_CLOSE)[0], content.split(THINK_CLOSE)[-1]
            reasoning = before.rstrip("\n").split(THINK_OPEN)[-1].lstrip("\n")
            content = after.lstrip("\n")
        text = content
        if after_query and (final or reasoning):
            text = f"{THINK_OPEN}\n{reasoning.strip('\n')}\n{THINK_CLOSE}\n\n{content.lstrip('\n')}"
        return text + tool_calls_text(step.tool_calls, content)
