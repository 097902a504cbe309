"""Which record format and which prompt template a run uses, when the config leaves them to us."""

import contextlib
from dataclasses import dataclass
from pathlib import Path

from ..config import ConfigError
from ..config.sections.data import DataConfig
from .errors import SKIP_HINT, DataError
from .formats import detect_format
from .readers import data_files, read_records

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


@dataclass(frozen=True)
class TemplateChoice:
    """The prompt template a run uses and why (the run log and the data report say both)."""

    name: str
    reason: str


def resolve_template(data: DataConfig, dataset_format: str, tokenizer, recipe: str | None = None) -> TemplateChoice:
    """The template the config names for this data (alpaca data: prompt_template, then chat_format; chat data:
    chat_format, then prompt_template); when both are auto: the tokenizer's own chat_template, else the
    template of the recipe's model family, else alpaca."""
    keys = ("prompt_template", "chat_format") if dataset_format == "alpaca" else ("chat_format", "prompt_template")
    for key in keys:
        if getattr(data, key) != "auto":
            return TemplateChoice(getattr(data, key), f"data.{key}")
    if getattr(tokenizer, "chat_template", None):
        return TemplateChoice("tokenizer", f"auto: the chat_template of the tokenizer {tokenizer.name_or_path}")
    family = recipe_template(recipe)
    if family:
        return TemplateChoice(family, f"auto: the tokenizer has no chat_template; recipe {recipe}'s model family")
    return TemplateChoice("alpaca", "auto: the tokenizer has no chat_template and no recipe names a model family")


def recipe_template(recipe: str | None) -> str | None:
    """The chat template of the recipe's model family (recipes/<name>.py), or None without a recipe."""
    if not recipe:
        return None
    import recipes

    try:
        return recipes.recipe(recipe).template
    except ValueError as err:
        raise ConfigError(f"recipe: {err}") from None


def run_template(cfg, tokenizer) -> TemplateChoice:
    """The template a run's data pipeline uses (format detected from cfg.data's files, as the pipeline does)."""
    dataset_format = resolve_format(cfg.data, data_files(cfg.data.data_path))
    return resolve_template(cfg.data, dataset_format, tokenizer, cfg.recipe)
