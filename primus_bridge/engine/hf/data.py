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
    from ...data.records import Conversation, Turn
    from ...data.templates import get_template

    probe = Conversation(system=None, turns=(Turn(user="Hi", assistant="Hello"),), where="end-of-turn probe",
                         ordinal=0)
    rendered = get_template(template_name, tokenizer).render(probe)
    start, end = rendered.responses[-1]
    ids = tokenizer.encode(rendered.text[start:end], add_special_tokens=False)
    return ids[-1] if ids else tokenizer.eos_token_id
