"""Load the run's tokenizer: `model.tokenizer`, else `hf_model_name_or_path`; local files only (no network)."""

from pathlib import Path

from ..config import ConfigError, PrimusConfig


def tokenizer_source(cfg: PrimusConfig) -> tuple[str, str]:
    """(path or hub id, the config key it came from)."""
    if cfg.model.tokenizer:
        return cfg.model.tokenizer, "model.tokenizer"
    if cfg.hf_model_name_or_path:
        return cfg.hf_model_name_or_path, "hf_model_name_or_path"
    raise ConfigError("model.tokenizer: no tokenizer given; pass --tokenizer PATH (e.g. examples/tokenizer) "
                      "or --hf_model_name_or_path of a local HF model folder")


def _looks_like_path(source: str) -> bool:
    return source.startswith((".", "/", "~")) or source.count("/") != 1 or Path(source).exists()


def load_tokenizer(cfg: PrimusConfig):
    """A `transformers` fast tokenizer (offset mapping is needed for exact loss masks)."""
    from transformers import AutoTokenizer

    source, key = tokenizer_source(cfg)
    local = Path(source).expanduser()
    if _looks_like_path(source) and not local.is_dir():
        raise ConfigError(f"{key}: {source!r} is not a folder; pass a tokenizer folder saved with save_pretrained")
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            str(local) if local.is_dir() else source, local_files_only=True,
            trust_remote_code=cfg.model.trust_remote_code,
        )
    except (OSError, ValueError) as err:
        if local.is_dir():
            raise ConfigError(f"{key}: cannot load a tokenizer from folder {source!r}: {err}") from None
        raise ConfigError(f"{key}: {source!r} is not a local folder and not in the local HF cache (there is no "
                          "network here); download it where there is network and pass the local folder") from None
    if not getattr(tokenizer, "is_fast", False) or not hasattr(tokenizer, "_tokenizer"):
        raise ConfigError(f"{key}: {source!r} has no fast (tokenizers) tokenizer; the data pipeline needs its "
                          "offset mapping; save one with tokenizer.json")
    return tokenizer
