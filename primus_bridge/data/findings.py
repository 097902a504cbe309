"""What the data holds that training will not use as meant: columns no format reads, and `{{name}}` placeholders.

Neither stops a run (an `id` or `source` column is common and harmless; a placeholder may be literal text), but
neither passes silently: each is counted per file, logged once per file and listed in the data report.
"""

import logging
import re

from .records import Conversation

PLACEHOLDER = re.compile(r"\{\{\s*[A-Za-z_][A-Za-z0-9_]*\s*\}\}")
"""A template variable left unfilled, as `{{name}}` or `{{ name }}`."""
WHERE_SUFFIX = re.compile(r"(?::\d+(?: \(record \d+\))?|: row \d+)$")
"""How readers.py appends the position to the file: 'file:line', 'file:line (record N)', 'file: row N'."""

log = logging.getLogger("primus_bridge")


def file_of(where: str) -> str:
    return WHERE_SUFFIX.sub("", where)


def _texts(conversation: Conversation):
    if conversation.system is not None:
        yield conversation.system
    for turn in conversation.turns:
        yield from (turn.user, turn.context)
        yield from (step.content for step in turn.steps)
        yield turn.assistant


def find_placeholder(conversation: Conversation) -> str | None:
    """The first `{{name}}` placeholder in the conversation's text, or None."""
    for text in _texts(conversation):
        if "{{" in text and (match := PLACEHOLDER.search(text)):
            return match.group(0)
    return None


class Findings:
    """Unused columns and placeholders, counted per file with the first record that shows each."""

    def __init__(self):
        self.columns: dict[tuple[str, str], list] = {}
        """(file, column) -> [records, first where]."""
        self.placeholders: dict[str, list] = {}
        """file -> [records, first where, first placeholder]."""

    def note(self, where: str, unused: list[str], conversation: Conversation) -> None:
        """Count one accepted record: its unused columns and whether its text holds a placeholder."""
        if unused:
            path = file_of(where)
            for column in unused:
                self.columns.setdefault((path, column), [0, where])[0] += 1
        placeholder = find_placeholder(conversation)
        if placeholder is not None:
            self.placeholders.setdefault(file_of(where), [0, where, placeholder])[0] += 1

    def unused_columns(self) -> list[dict]:
        return [{"file": path, "column": column, "records": count, "first": first}
                for (path, column), (count, first) in self.columns.items()]

    def placeholder_records(self) -> list[dict]:
        return [{"file": path, "records": count, "first": first, "example": example}
                for path, (count, first, example) in self.placeholders.items()]

    def log(self, dataset_format: str) -> None:
        log_findings(dataset_format, self.unused_columns(), self.placeholder_records())


def log_findings(dataset_format: str, unused_columns: list[dict], placeholders: list[dict]) -> None:
    """One warning per file and column, and per file with placeholders (the lists as the DataReport holds them)."""
    for item in unused_columns:
        log.warning("data: %s: %d record(s) have column %r, which the %s format does not read (first: %s); "
                    "it is not trained on", item["file"], item["records"], item["column"], dataset_format,
                    item["first"])
    for item in placeholders:
        log.warning("data: %s: %d record(s) contain a template placeholder such as %s (first: %s); it is "
                    "trained on as literal text", item["file"], item["records"], item["example"], item["first"])
