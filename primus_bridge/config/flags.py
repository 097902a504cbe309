"""Command-line flags of the user contract and their YAML keys; `--help` shows each key and default."""

import argparse

from .errors import ConfigError
from .layers import Layer, nest
from .schema import PrimusConfig

# (flag, dotted YAML key, is_switch). The first 19 (+ --config) are the user contract's flags.
CONTRACT_FLAGS = [
    ("--framework", "framework", False),
    ("--load", "model.load", False),
    ("--data_path", "data.data_path", False),
    ("--convert_from_hf", "convert_from_hf", True),
    ("--hf_model_name_or_path", "hf_model_name_or_path", False),
    ("--lr", "training.lr", False),
    ("--train_iters", "training.train_iters", False),
    ("--use_lora", "lora.use_lora", True),
    ("--lora_rank", "lora.lora_rank", False),
    ("--lora_alpha", "lora.lora_alpha", False),
    ("--dataset_format", "data.dataset_format", False),
    ("--prompt_template", "data.prompt_template", False),
    ("--chat_format", "data.chat_format", False),
    ("--micro_batch_size", "training.micro_batch_size", False),
    ("--clip_grad", "training.clip_grad", False),
    ("--lr_warmup_iters", "training.lr_warmup_iters", False),
    ("--convert_to_hf", "convert_to_hf", True),
    ("--hf_save_path", "hf_save_path", False),
]
EXTRA_FLAGS = [
    ("--engine", "engine", False),
    ("--recipe", "recipe", False),
    ("--gpu", "gpu", False),
    ("--force", "force", True),
    ("--global_batch_size", "training.global_batch_size", False),
    ("--seq_length", "data.seq_length", False),
    ("--save", "checkpointing.save", False),
    ("--tokenizer", "model.tokenizer", False),
    ("--skip_bad_records", "data.skip_bad_records", True),
    ("--overwrite", "checkpointing.overwrite", True),
    ("--no_output_ok", "checkpointing.no_output_ok", True),
]
NEGATIVE_SWITCHES = [("--no_resume", "checkpointing.resume")]


def _field_info(dotted: str):
    model, info = PrimusConfig, None
    for part in dotted.split("."):
        info = model.model_fields[part]
        model = info.annotation
    return info


def _help_for(dotted: str) -> str:
    info = _field_info(dotted)
    default = info.get_default(call_default_factory=True)
    return f"{(info.description or '').rstrip('.')} [yaml: {dotted}; default: {default}]"


def add_config_arguments(parser: argparse.ArgumentParser, only: set[str] | None = None) -> None:
    """Every contract flag plus --config, --set and our extras; unset flags stay None (they override nothing).

    `only`: the config flags a verb uses (e.g. {"--load", "--save"}); --config, --set and --debug are always there.
    """
    group = parser.add_argument_group("configuration (a flag overrides the YAML value)")
    group.add_argument("--config", metavar="YAML", help="training YAML (the contract's layout; may use extends:)")
    for flag, dotted, is_switch in CONTRACT_FLAGS + EXTRA_FLAGS:
        if only is not None and flag not in only:
            continue
        dest = "flag:" + dotted
        if is_switch:
            group.add_argument(flag, dest=dest, action="store_const", const=True, default=None, help=_help_for(dotted))
        else:
            group.add_argument(flag, dest=dest, metavar=dotted.rsplit(".", 1)[-1].upper(), default=None,
                               help=_help_for(dotted))
    for flag, dotted in NEGATIVE_SWITCHES:
        if only is not None and flag not in only:
            continue
        group.add_argument(flag, dest="flag:" + dotted, action="store_const", const=False, default=None,
                           help=f"turn off {dotted} [yaml: {dotted}: false]")
    group.add_argument("--set", dest="set_values", action="append", default=[], metavar="KEY=VALUE",
                       help="set any config key, e.g. --set data.packing=false (repeatable)")
    group.add_argument("--debug", action="store_true", help="show tracebacks for errors")


def _parse_set(item: str) -> tuple[str, object]:
    import yaml

    dotted, sep, raw = item.partition("=")
    if not sep or not dotted.strip():
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set training.lr=1e-5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return dotted.strip(), value


def cli_layer(args: argparse.Namespace) -> Layer:
    """The flags that were given, as the highest-precedence layer."""
    values, origins = {}, {}
    flag_of = {dotted: flag for flag, dotted, _ in CONTRACT_FLAGS + EXTRA_FLAGS}
    flag_of.update({dotted: flag for flag, dotted in NEGATIVE_SWITCHES})
    for dest, value in vars(args).items():
        if dest.startswith("flag:") and value is not None:
            dotted = dest.removeprefix("flag:")
            values = _merge(values, nest(dotted, value))
            origins[dotted] = f"cli {flag_of[dotted]}"
    for item in args.set_values:
        dotted, value = _parse_set(item)
        values = _merge(values, nest(dotted, value))
        origins[dotted] = f"cli --set {dotted}"
    return Layer("cli", values, origins)


def _merge(a: dict, b: dict) -> dict:
    from .yaml_source import deep_merge

    return deep_merge(a, b)
