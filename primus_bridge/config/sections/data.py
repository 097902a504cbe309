"""`data:` — where the training data is, its format and how it becomes token rows."""

import re
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator

from ...utils.numbers import is_number
from .base import Section

DatasetFormat = Literal["auto", "alpaca", "sharegpt", "openai"]
Template = Literal["auto", "alpaca", "chatml", "llama3", "llama3.1", "qwen2", "qwen2.5", "qwen3", "mistral",
                   "mistral-v3", "gemma", "tokenizer"]


SOURCE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
"""A source name: it becomes part of scalar names (valid/loss/<name>) and report columns."""
MIX_SPEC = re.compile(r"^(?:(?P<weight>[0-9.eE+-]+)|weight=(?P<long_weight>.*)|samples=(?P<samples>.*))$")
"""What may follow the last ':' of a --data_path mixture entry: 0.7, weight=0.7 or samples=5000."""
MAX_MIX_SAMPLES = 1_000_000_000


class DataSource(Section):
    """One source of a data mixture (an entry of the data.data_path list)."""

    path: str = Field(min_length=1)
    """A JSON / JSON Lines / Parquet file or a folder of them."""
    name: str | None = None
    """Name in reports and scalars (valid/loss/<name>); default: the file or folder name without its suffix."""
    weight: float | None = Field(default=None, gt=0)
    """Relative share of the training samples (normalized over the sources); records repeat to meet it."""
    samples: int | None = Field(default=None, ge=1, le=MAX_MIX_SAMPLES)
    """Training samples taken from this source per pass over the mixture (a seeded subset, or repeats)."""
    dataset_format: DatasetFormat | None = None
    """This source's record layout; default data.dataset_format."""
    prompt_template: Template | None = None
    """This source's data.prompt_template; every source must end up with the same template."""
    chat_format: Template | None = None
    """This source's data.chat_format; every source must end up with the same template."""

    def default_name(self) -> str:
        stem = Path(self.path.rstrip("/")).stem or "data"
        return re.sub(r"[^A-Za-z0-9_.-]", "_", stem)


def parse_mixture(text: str) -> list[dict]:
    """--data_path 'a.jsonl:0.7,b.jsonl:0.3' -> [{"path": "a.jsonl", "weight": 0.7}, ...].

    Entries are split at every ','; an entry ends in ':SPEC' when what follows its last ':' is a number (a
    weight), weight=NUMBER or samples=COUNT; otherwise the ':' belongs to the path.
    """
    entries = []
    for index, entry in enumerate(text.split(",")):
        path, colon, tail = entry.strip().rpartition(":")
        match = MIX_SPEC.match(tail.strip()) if colon else None
        if match is None or (match["weight"] is not None and not is_number(match["weight"])):
            entries.append({"path": entry.strip()})
            continue
        key, value = ("samples", match["samples"]) if match["samples"] is not None else \
            ("weight", match["weight"] if match["weight"] is not None else match["long_weight"])
        entries.append({"path": path.strip(), key: _spec_number(value, key, index)})
    return entries


def _spec_number(text: str, key: str, index: int) -> float | int:
    try:
        return int(text) if key == "samples" else float(text)
    except ValueError:
        kind = "a whole number" if key == "samples" else "a number"
        raise ValueError(f"data.data_path[{index}].{key}: {text!r} is not {kind}; write entries as PATH:0.7, "
                         f"PATH:weight=0.7 or PATH:samples=5000, separated by ','") from None


def _looks_like_mixture(text: str) -> bool:
    return "," in text or any(":" in e and MIX_SPEC.match(e.rpartition(":")[2].strip()) for e in text.split(","))


def _source(item, index: int) -> DataSource:
    where = f"data.data_path[{index}]"
    if isinstance(item, str):
        item = {"path": item}
    if not isinstance(item, dict):
        raise ValueError(f"{where}: expected a path or a mapping like {{path: a.jsonl, weight: 0.7}}, "
                         f"got {item!r}")
    try:
        source = DataSource.model_validate(item)
    except ValidationError as err:
        errors = err.errors()
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])  # a misspelt key first
        key = ".".join(str(part) for part in first["loc"])
        problem = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            problem = f"unknown key; the keys are {', '.join(DataSource.model_fields)}"
        raise ValueError(f"{where}{'.' + key if key else ''}: {problem}") from None
    if source.weight is not None and source.samples is not None:
        raise ValueError(f"{where}: sets both weight and samples; keep one (weights share the mixture out, "
                         f"samples are counts per pass)")
    name = source.name if source.name is not None else source.default_name()
    if not SOURCE_NAME.match(name):
        raise ValueError(f"{where}.name: {name!r}: use letters, digits, '_', '.' and '-' only")
    return source.model_copy(update={"name": name})


def check_mixture(sources: list[DataSource]) -> list[DataSource]:
    """Every source gives a weight, or every one a sample count, or none does; names are distinct."""
    if not sources:
        raise ValueError("data.data_path: an empty list; name at least one source")
    for key in ("weight", "samples"):
        given = [getattr(s, key) is not None for s in sources]
        if any(given) and not all(given):
            index, first = given.index(False), given.index(True)
            raise ValueError(f"data.data_path[{index}].{key}: not set, but data.data_path[{first}] sets {key}; "
                             f"give every source a {key}, or none")
    seen: dict[str, int] = {}
    for index, source in enumerate(sources):
        if source.name in seen:
            raise ValueError(f"data.data_path[{index}].name: {source.name!r} is also data.data_path"
                             f"[{seen[source.name]}]'s name; set a distinct name for one of them")
        seen[source.name] = index
    return sources


class DataConfig(Section):
    data_path: str | list[DataSource] | None = None
    """Training data: a JSON / JSON Lines / Parquet file or a folder of them, or a mixture of sources: a list of
    {path, weight | samples, name, dataset_format, prompt_template, chat_format}, on the command line
    'a.jsonl:0.7,b.jsonl:0.3' (flag --data_path)."""
    dataset_format: DatasetFormat = "auto"
    """Record layout: alpaca, sharegpt, openai, or auto-detect (flag --dataset_format)."""
    prompt_template: Template = "auto"
    """How records become text: alpaca, chatml, llama3, llama3.1, qwen2, qwen2.5, qwen3, mistral, mistral-v3, gemma,
    tokenizer (the tokenizer's own chat_template), or auto: the tokenizer's chat_template when it has one, else the
    recipe's model family template, else alpaca (flag --prompt_template)."""
    chat_format: Template = "auto"
    """Template for chat (sharegpt / openai) data; auto: as prompt_template (flag --chat_format)."""
    template_date: str | None = None
    """The 'Today Date' the llama3.1 template writes in its system header, like '26 Jul 2024' (unset: that date,
    as Llama 3.1 and 3.3 write it). Llama 3.2's template writes the day it is served: set the date your serving
    writes."""
    split: str = "95,5,0"
    """Train,valid,test percentages, summing to 100."""
    seq_length: int = Field(default=2048, ge=8)
    """Tokens per training row."""
    packing: bool = True
    """Pack several samples into each row (attention stays within each sample)."""
    train_on_prompt: bool = False
    """Also train on prompt / user tokens."""
    mask_history: bool = False
    """Train only the last assistant turn of each conversation."""
    seed: int = 1234
    """Seed for the split and the sample order."""
    skip_bad_records: bool = False
    """Skip (and count) malformed records instead of stopping with an error."""
    cache_dir: str | None = None
    """Where tokenized, packed data is cached; default .cache/primus-bridge/data."""
    num_workers: int = Field(default=0, ge=0)
    """Data-loader worker processes."""

    @field_validator("data_path", mode="before")
    @classmethod
    def _path_or_mixture(cls, value):
        """A string naming an existing file or folder is that one path, whatever it contains; a string like
        'a.jsonl:0.7,b.jsonl:0.3' or a list becomes the list of sources."""
        if isinstance(value, str):
            if not _looks_like_mixture(value) or Path(value).expanduser().exists():
                return value
            value = parse_mixture(value)
        if isinstance(value, (list, tuple)):
            return check_mixture([_source(item, index) for index, item in enumerate(value)])
        return value

    @field_validator("split")
    @classmethod
    def _split_three_percentages(cls, value: str) -> str:
        parts = [p.strip() for p in str(value).split(",")]
        try:
            numbers = [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"split {value!r}: expected three numbers like '95,5,0'") from None
        if len(numbers) != 3 or any(n < 0 for n in numbers) or abs(sum(numbers) - 100) > 1e-6:
            raise ValueError(f"split {value!r}: expected three non-negative numbers summing to 100, like '95,5,0'")
        return value

    @field_validator("template_date")
    @classmethod
    def _date_as_llama_writes_it(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            written = datetime.strptime(value, "%d %b %Y").strftime("%d %b %Y")
        except ValueError:
            raise ValueError(f"template_date {value!r}: expected a date like '26 Jul 2024'") from None
        if written != value:
            raise ValueError(f"template_date {value!r}: write it {written!r}, as the chat template does")
        return value

    def split_fractions(self) -> tuple[float, float, float]:
        a, b, c = (float(p) for p in self.split.split(","))
        return a / 100, b / 100, c / 100

    def is_mixture(self) -> bool:
        return isinstance(self.data_path, list)

    def sources(self) -> list[DataSource]:
        """The data's sources: the mixture's list, or the single path as one source."""
        if self.is_mixture():
            return list(self.data_path)
        source = DataSource(path=self.data_path or "")
        return [source.model_copy(update={"name": source.default_name()})]

    def keyed_sources(self) -> list[tuple[str, DataSource]]:
        """(config key, source) of each source: `data.data_path[i]` in a mixture, else `data.data_path`."""
        if self.is_mixture():
            return [(f"data.data_path[{index}]", source) for index, source in enumerate(self.data_path)]
        return [("data.data_path", source) for source in self.sources()]

    def for_source(self, source: DataSource) -> "DataConfig":
        """This config as one source sees it: its path, and its own format / template where it sets them."""
        overrides = {key: getattr(source, key) for key in ("dataset_format", "prompt_template", "chat_format")
                     if getattr(source, key) is not None}
        return self.model_copy(update={"data_path": source.path, **overrides})

    def template_for_chat(self) -> str | None:
        """The template named for chat data (chat_format, else prompt_template); None when both are auto."""
        return next((name for name in (self.chat_format, self.prompt_template) if name != "auto"), None)
