"""Which record format and which prompt template a run uses, when the config leaves them to us."""

import contextlib
from dataclasses import dataclass
from pathlib import Path

from ..config.errors import ConfigError
from ..config.recipe import recipe as find_recipe
from ..config.sections.data import DataConfig, DataSource
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


@dataclass(frozen=True)
class SourcePlan:
    """One data source as the pipeline reads it: its files, record format and template."""

    source: DataSource
    data: DataConfig
    """data as this source sees it (DataConfig.for_source): its path and its own format / template keys."""
    files: list[Path]
    dataset_format: str
    choice: TemplateChoice


def resolve_sources(data: DataConfig, tokenizer, recipe: str | None = None) -> list[SourcePlan]:
    """Files, format and template of each source: the one path, or every entry of a data.data_path list."""
    plans = []
    for source in data.sources():
        view = data.for_source(source) if data.is_mixture() else data
        files = data_files(view.data_path)
        dataset_format = resolve_format(view, files)
        plans.append(SourcePlan(source, view, files, dataset_format,
                                resolve_template(view, dataset_format, tokenizer, recipe)))
    return plans


def agreed_template(plans: list[SourcePlan]) -> TemplateChoice:
    """The one template every source renders with: a run trains, exports and is served in one chat format."""
    first = plans[0].choice
    for index, plan in enumerate(plans[1:], 1):
        if plan.choice.name != first.name:
            raise ConfigError(f"data.data_path[{index}]: renders with template {plan.choice.name!r} "
                              f"({plan.choice.reason}) but data.data_path[0] with {first.name!r} ({first.reason}); "
                              "a run trains and exports one chat format: set data.prompt_template / "
                              "data.chat_format (or the source's own prompt_template / chat_format) so they agree")
    return first


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
    return find_recipe(recipe).template if recipe else None


def run_template(cfg, tokenizer) -> TemplateChoice:
    """The template a run's data pipeline uses (format detected from cfg.data's files, as the pipeline does)."""
    return agreed_template(resolve_sources(cfg.data, tokenizer, cfg.recipe))
