"""`data:` — where the training data is, its format and how it becomes token rows."""

from datetime import datetime
from typing import Literal

from pydantic import Field, field_validator

from .base import Section

DatasetFormat = Literal["auto", "alpaca", "sharegpt", "openai"]
Template = Literal["auto", "alpaca", "chatml", "llama3", "llama3.1", "qwen2", "qwen2.5", "qwen3", "mistral",
                   "mistral-v3", "gemma", "tokenizer"]


class DataConfig(Section):
    data_path: str | None = None
    """Training data: a JSON / JSON Lines / Parquet file or a folder of them (flag --data_path)."""
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

    def template_for_chat(self) -> str | None:
        """The template named for chat data (chat_format, else prompt_template); None when both are auto."""
        return next((name for name in (self.chat_format, self.prompt_template) if name != "auto"), None)
