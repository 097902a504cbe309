"""Which record format and which prompt template a run uses, when the config leaves them to us."""

import contextlib
from pathlib import Path

from ..config import ConfigError
from ..config.sections.data import DataConfig
from .errors import SKIP_HINT, DataError
from .formats import detect_format
from .readers import read_records

DETECT_RECORDS = 5


def resolve_format(data: DataConfig, files: list[Path]) -> str:
    """data.dataset_format, or for `auto` the format the first readable records agree on.

    Unparsable records are passed over here; the main pass reports (or skips) every bad record in file order.
    """
    if data.dataset_format != "auto":
        return data.dataset_format
    seen: list[tuple[str, str]] = []
    first_problem: DataError | None = None
    with contextlib.closing(read_records(files)) as records:
        for raw in records:
            if raw.problem is not None:
                first_problem = first_problem or DataError(raw.where, f"{raw.problem}; {SKIP_HINT}",
                                                           raw.kind or "bad record")
                continue
            try:
                seen.append((detect_format(raw), raw.where))
            except DataError as err:
                if not data.skip_bad_records:
                    raise first_problem or err from None
            if len(seen) == DETECT_RECORDS:
                break
    return _agreed_format(seen, first_problem if not data.skip_bad_records else None, str(data.data_path))


def _agreed_format(seen: list[tuple[str, str]], first_problem: DataError | None, data_path: str) -> str:
    if not seen:
        raise first_problem or DataError(data_path, "no readable records to detect the format from", "empty data")
    if len({fmt for fmt, _ in seen}) > 1:
        raise DataError(seen[0][1], "cannot detect the dataset format: the first records disagree ("
                        + ", ".join(f"{where} looks {fmt}" for fmt, where in seen) + "); set data.dataset_format",
                        "unknown format")
    return seen[0][0]


def resolve_template(data: DataConfig, dataset_format: str, tokenizer) -> str:
    """alpaca data: prompt_template (default alpaca); chat data: chat_format, else prompt_template, else the
    tokenizer's own chat_template."""
    if dataset_format == "alpaca":
        return data.prompt_template or data.chat_format or "alpaca"
    name = data.template_for_chat()
    if name:
        return name
    if getattr(tokenizer, "chat_template", None):
        return "tokenizer"
    raise ConfigError("data.chat_format: chat data needs a template and the tokenizer has no chat_template; "
                      "pass --chat_format chatml (or llama3, qwen2, mistral, alpaca)")
