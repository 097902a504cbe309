"""The hf engine's view of the data pipeline: the tokenizer, the packed splits, the template's end-of-turn token."""

from ...config import ConfigError, PrimusConfig
from ...data import PreparedData, load_tokenizer, prepare_data
from .distributed import DistEnv, barrier


def load_run_data(cfg: PrimusConfig, env: DistEnv) -> tuple[object, PreparedData]:
    """(tokenizer, PreparedData); rank 0 tokenizes (or fills the cache) first, the other ranks then read it."""
    tokenizer = load_tokenizer(cfg)
    if not env.is_main:
        barrier(env)
    data = prepare_data(cfg, tokenizer)
    if env.is_main:
        barrier(env)
    if not len(data.train):
        raise ConfigError(f"data.split: {cfg.data.split} leaves no training rows from {cfg.data.data_path}; "
                          "give the train split a larger share or add data")
    return tokenizer, data


def end_of_turn_token_id(template_name: str, tokenizer) -> int | None:
    """The token that closes each trained reply: the last token of a reply span the template renders."""
    from ...data.templates import get_template, reply_closing_token_id

    return reply_closing_token_id(get_template(template_name, tokenizer), tokenizer)
