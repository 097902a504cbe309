"""Checks the tool-calling templates share: what their official chat templates cannot write is refused,
never dropped."""

from ..errors import DataError
from ..records import Step


def require_call_only(template: str, step: Step, where: str) -> None:
    """A tool-call message is written as its calls alone: text beside the calls would be silently lost."""
    if step.tool_calls and step.content.strip():
        raise DataError(where, f"an assistant message has both text ({step.content.strip()!r:.60}) and a tool "
                               f"call; the {template} chat template writes a tool-call message as its calls alone "
                               "and would drop the text. Put the text in a message of its own, or remove it",
                        "unsupported tool call")
