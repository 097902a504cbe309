"""--model -> the folders `chat` loads: an HF model (an export), a PEFT adapter on its base model, or a
checkpoint of either engine, exported first through the engine's own export (as `convert --convert_to_hf`)
into a temporary folder that is removed afterwards.
"""

import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..checkpoint import EXPORT_MARKER, checkpoint_engine, latest_checkpoint
from ..config import ConfigError, PrimusConfig
from .trained_template import TrainedTemplate, read_trained_template

ADAPTER_CONFIG = "adapter_config.json"
RUN_CONFIG = "run_config.yaml"
"""Every iteration folder holds one (ours on the hf engine, Megatron-Bridge's on the megatron engine)."""
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json")


@dataclass(frozen=True)
class ModelSource:
    model: str
    """The HF model to load: a folder, or a hub id in the local HF cache (an adapter's base)."""
    adapter: Path | None
    """A PEFT adapter folder to apply on `model`."""
    tokenizer: str
    trained: TrainedTemplate | None
    """The template recorded with the model."""


def note(message: str) -> None:
    print(f"chat: {message}", file=sys.stderr)


def _has_tokenizer(folder: Path) -> bool:
    return any((folder / name).is_file() for name in TOKENIZER_FILES)


def adapter_source(adapter: Path, base_model: str | None) -> ModelSource:
    """A PEFT adapter: its base is --base_model or the one adapter_config.json records; its tokenizer is its own,
    else the export's it sits in, else the base model's."""
    recorded = json.loads((adapter / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    base = base_model or recorded
    if not base:
        raise ConfigError(f"--model {adapter}: the adapter records no base model; pass --base_model FOLDER")
    if base_model and recorded and base_model != recorded:
        note(f"--base_model {base_model} replaces the base the adapter records ({recorded})")
    if not base_model and not Path(base).exists() and Path(base).is_absolute():
        raise ConfigError(f"--model {adapter}: the adapter's base model {base} does not exist here; pass "
                          "--base_model FOLDER (the model the adapter was trained on)")
    in_export = (adapter.parent / EXPORT_MARKER).is_file() and _has_tokenizer(adapter.parent)
    tokenizer = adapter if _has_tokenizer(adapter) else adapter.parent if in_export else base
    return ModelSource(base, adapter, str(tokenizer), read_trained_template(adapter, with_parent=True))


def is_checkpoint(folder: Path) -> bool:
    """A save folder or an iteration folder of either engine (Megatron-Bridge's own imports included)."""
    return latest_checkpoint(folder) is not None or (folder / RUN_CONFIG).is_file() \
        or any(folder.glob(f"iter_*/{RUN_CONFIG}"))


@contextmanager
def exported_checkpoint(checkpoint: Path) -> Iterator[ModelSource]:
    """The HF export of `checkpoint` (a save or iteration folder) in a temporary folder, removed on exit."""
    from ..engine import get_engine

    engine = checkpoint_engine(checkpoint)
    workspace = Path(tempfile.mkdtemp(prefix="primus-bridge-chat-"))
    note(f"exporting the {engine} checkpoint {checkpoint} to {workspace} (removed afterwards)")
    try:
        out = get_engine(engine).export(PrimusConfig(), checkpoint, workspace / "hf_model")
        yield ModelSource(str(out), None, str(out), read_trained_template(out))
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


@contextmanager
def open_model(path: str, base_model: str | None = None) -> Iterator[ModelSource]:
    folder = Path(path)
    if not folder.is_dir():
        raise ConfigError(f"--model {path}: no such folder; give an HF export, a PEFT adapter folder or a "
                          "checkpoint folder")
    if (folder / ADAPTER_CONFIG).is_file():
        yield adapter_source(folder, base_model)
    elif (folder / "config.json").is_file():
        yield ModelSource(str(folder), None, str(folder), read_trained_template(folder))
    elif is_checkpoint(folder):
        with exported_checkpoint(folder) as source:
            yield source
    else:
        raise ConfigError(f"--model {path}: not an HF model (no config.json), a PEFT adapter (no {ADAPTER_CONFIG}) "
                          "or a checkpoint (no primus_bridge.json / latest_checkpointed_iteration.txt)")
