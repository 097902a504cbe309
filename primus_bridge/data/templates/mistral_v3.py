"""Mistral Instruct v0.3 (tokenizer v3): `<s>[INST] user[/INST] reply</s>[INST] ...`, replies trimmed, with
tool calling.

The system prompt goes at the start of the last user message, followed by a blank line: where Mistral's
reference tokenizer (mistral-common) puts it, and where the official template puts it when it renders a
prompt that ends with that message. (The template tests `loop.last`, so rendering a whole conversation that
ends with a reply leaves the system prompt out; the text here keeps it where the model is served it.) Earlier
turns are therefore written without it, and each turn's text depends on whether it is the last.

Tools: `[AVAILABLE_TOOLS] [...][/AVAILABLE_TOOLS]` before the last user message (the template compares whole
messages, so an earlier user message equal to the last one gets them too); a tool-call message is
`[TOOL_CALLS] [{"name": ..., "arguments": {...}, "id": "..."}, ...]</s>`, trained whole; a result is
`[TOOL_RESULTS] {"content": <result text>, "call_id": "..."}[/TOOL_RESULTS]`. The template only takes call ids
of 9 letters or digits: ids of another shape are refused. Calls without an id get one derived from the record
(a hash of its ordinal, the call's place and the call itself, so the same record always gets the same ids),
and a result without a tool_call_id answers the call at its place among the calls of the tool-call message
before it.
"""

import hashlib
import json
import re
import string
from dataclasses import replace

from ..errors import DataError
from ..records import Conversation, Step, ToolCall, Turn
from .base import Rendered, TextBuilder, require_tokens
from .tool_steps import require_call_only

BOS, EOS = "<s>", "</s>"
INST, INST_END = "[INST]", "[/INST]"
TOOLS, TOOLS_END = "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]"
CALLS, RESULTS, RESULTS_END = "[TOOL_CALLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]"
MARKERS = (BOS, EOS, INST, INST_END, TOOLS, TOOLS_END, CALLS, RESULTS, RESULTS_END)
ID_SHAPE = re.compile(r"[A-Za-z0-9]{9}")
ID_ALPHABET = string.ascii_letters + string.digits


def _json(value: object) -> str:
    """Jinja's `tojson` as Transformers defines it."""
    return json.dumps(value, ensure_ascii=False)


def derived_call_id(ordinal: int, place: tuple[int, ...], call: ToolCall) -> str:
    """9 letters or digits from a hash of the record's ordinal, the call's place and the call."""
    key = f"{ordinal}:{place}:{call.name}:{json.dumps(call.arguments, sort_keys=True)}"
    number = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    digits = []
    for _ in range(9):
        number, digit = divmod(number, len(ID_ALPHABET))
        digits.append(ID_ALPHABET[digit])
    return "".join(digits)


def _checked_id(call_id: str, where: str, what: str) -> str:
    if not ID_SHAPE.fullmatch(call_id):
        raise DataError(where, f"{what} {call_id!r}: the mistral-v3 chat template takes tool call ids of 9 letters "
                               "or digits; give ids of that shape, or leave them out (they are then derived from "
                               "the record)", "invalid tool call")
    return call_id


def _schema(tool: dict) -> str:
    """One tool schema as the template writes it: string fields raw between quotes, the others as JSON."""
    fields = ", ".join(f'"{key}": "{value}"' if isinstance(value, str) else f'"{key}": {_json(value)}'
                       for key, value in tool["function"].items() if key != "return")
    return f'{{"type": "function", "function": {{{fields}}}}}'


class MistralV3Template:
    name = "mistral-v3"
    supports_tools = True

    def __init__(self, tokenizer):
        require_tokens(self.name, tokenizer, MARKERS)

    def with_call_ids(self, conversation: Conversation) -> Conversation:
        """The conversation with every tool call and result carrying its 9-character id (see the module doc)."""
        turns = tuple(self._turn_with_ids(conversation, k, turn) for k, turn in enumerate(conversation.turns))
        return replace(conversation, turns=turns)

    def _turn_with_ids(self, conversation: Conversation, k: int, turn: Turn) -> Turn:
        calls: tuple[ToolCall, ...] = ()
        steps, answered = [], 0
        for s, step in enumerate(turn.steps):
            if step.role == "assistant":
                calls = self._calls_with_ids(conversation, (k, s), step.tool_calls)
                answered = 0
                steps.append(replace(step, tool_calls=calls))
            else:
                steps.append(replace(step, tool_call_id=self._result_id(conversation.where, step, calls, answered)))
                answered += 1
        final = self._calls_with_ids(conversation, (k, len(turn.steps)), turn.tool_calls)
        return replace(turn, steps=tuple(steps), tool_calls=final)

    @staticmethod
    def _calls_with_ids(conversation: Conversation, place: tuple[int, int], calls: tuple[ToolCall, ...]
                        ) -> tuple[ToolCall, ...]:
        where, ordinal = conversation.where, conversation.ordinal
        return tuple(replace(call, id=_checked_id(call.id, where, "tool call id")) if call.id is not None
                     else replace(call, id=derived_call_id(ordinal, (*place, c), call))
                     for c, call in enumerate(calls))

    @staticmethod
    def _result_id(where: str, step: Step, calls: tuple[ToolCall, ...], answered: int) -> str:
        if step.tool_call_id is not None:
            return _checked_id(step.tool_call_id, where, "tool_call_id")
        if answered >= len(calls):
            raise DataError(where, "a tool result has no tool_call_id and no call before it left to answer; the "
                                   "mistral-v3 chat template writes the id of the call each result answers. Give "
                                   "the result its call's id", "invalid tool call")
        return calls[answered].id

    def render(self, conversation: Conversation) -> Rendered:
        conversation = self.with_call_ids(conversation)
        self._require_replies_between_turns(conversation)
        out = TextBuilder()
        out.add(BOS)
        last_user = conversation.turns[-1].user_text()
        tools = f"{TOOLS} [{', '.join(map(_schema, conversation.tools))}]{TOOLS_END}" if conversation.tools else ""
        for k, turn in enumerate(conversation.turns):
            out.start_turn()
            user = turn.user_text()
            if tools and user == last_user:
                out.add(tools)
            if k == len(conversation.turns) - 1 and conversation.system is not None:
                user = f"{conversation.system}\n\n{user}"
            out.add(f"{INST} {user}{INST_END}")
            for step in turn.replies():
                self._add_step(out, step, conversation.where)
        return out.build()

    @staticmethod
    def _require_replies_between_turns(conversation: Conversation) -> None:
        """The template requires user and (non-tool-call) assistant messages to alternate."""
        for k, turn in enumerate(conversation.turns[:-1]):
            if turn.tool_calls:
                raise DataError(conversation.where, f"turn {k + 1} ends with a tool call and the conversation goes "
                                                    "on; the mistral-v3 chat template needs a reply to end every "
                                                    "turn but the last", "unsupported tool call")

    def _add_step(self, out: TextBuilder, step: Step, where: str) -> None:
        if step.role == "tool":
            out.add(f'{RESULTS} {{"content": {step.content}, "call_id": "{step.tool_call_id}"}}{RESULTS_END}')
        elif step.tool_calls:
            require_call_only(self.name, step, where)
            calls = ", ".join(f'{_json({"name": call.name, "arguments": call.arguments})[:-1]}, "id": "{call.id}"}}'
                              for call in step.tool_calls)
            out.add_response(f"{CALLS} [{calls}]{EOS}")
        else:
            out.add_response(f" {step.content.strip()}{EOS}")
