"""`python -m primus_bridge.convert` / `primus-bridge convert`: HF -> Megatron import, checkpoint -> HF export.

Export:  --load CKPT --convert_to_hf --hf_save_path OUT   (engine read from the checkpoint)
Import:  --convert_from_hf --hf_model_name_or_path HF --save OUT   (Megatron checkpoint)
"""

import argparse
import sys
from pathlib import Path

from .checkpoint import checkpoint_engine
from .cli.errors import run_verb, wants_debug
from .cli.parser import ArgumentParser
from .config import ConfigError, add_config_arguments, load_config
from .engine import get_engine
from .logs import setup_logging
from .utils.atomic import apply_umask

IMPORT_ENGINE = "megatron"
"""The engine whose checkpoint format --convert_from_hf writes (the hf engine trains from HF folders directly)."""

CONVERT_FLAGS = {"--load", "--convert_to_hf", "--hf_save_path",  # export
                 "--convert_from_hf", "--hf_model_name_or_path", "--save",  # import
                 "--overwrite", "--framework"}
"""The config flags convert reads (--framework: the contract's, checked on every command); any other key can still
come from --config or --set."""


def _export(cfg) -> int:
    checkpoint = Path(cfg.model.load)
    if not checkpoint.exists():
        raise ConfigError(f"--load {checkpoint}: no such checkpoint folder")
    engine = get_engine(checkpoint_engine(checkpoint))
    out = engine.export(cfg, checkpoint, Path(cfg.hf_save_path))
    apply_umask(out)  # Megatron-Bridge's writer leaves its safetensors files 0600
    setup_logging().info("exported %s -> %s", checkpoint, out)
    return 0


def _import(cfg) -> int:
    if not cfg.checkpointing.save:
        raise ConfigError("--convert_from_hf in convert needs --save OUT (the Megatron checkpoint folder to write)")
    out = get_engine(IMPORT_ENGINE).import_hf(cfg, Path(cfg.checkpointing.save))
    setup_logging().info("imported %s -> %s", cfg.hf_model_name_or_path, out)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = ArgumentParser(prog="primus-bridge convert", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, only=CONVERT_FLAGS)
    args = parser.parse_args(argv)

    def body() -> int:
        cfg = load_config(args, trains=False)
        if cfg.convert_to_hf and cfg.model.load:
            return _export(cfg)
        if cfg.convert_from_hf:
            return _import(cfg)
        raise ConfigError("convert: give --load CKPT --convert_to_hf --hf_save_path OUT (export), "
                          "or --convert_from_hf --hf_model_name_or_path HF --save OUT (import)")

    return run_verb(body, wants_debug(argv))


if __name__ == "__main__":
    sys.exit(main())
