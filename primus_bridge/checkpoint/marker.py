"""The marker: one typed, versioned record of what a checkpoint or an HF export folder holds, for both engines.

A checkpoint's iteration folder holds `primus_bridge.json` (kind "checkpoint"), an HF export folder
`primus_bridge_export.json` (kind "export"). Each is written last, atomically, after the data it describes:
a folder whose marker reads is complete.

`read_marker` also reads what earlier versions wrote:
- format_version 1 (hf engine): step, lora, base_model, eos_token_id, template, engine;
- the megatron engine's unversioned record: hf_source (now base_model), tokenizer, base_checkpoint,
  transformer_impl, template, config_changes, lora, step;
- unversioned export records: checkpoint, save, step, exported_at;
- Megatron-Bridge's own checkpoints (imported from HF, or written without us): no marker; the HF model
  is the one their run_config.yaml names.
"""

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, computed_field

from ..config import ConfigError
from ..utils.atomic import atomic_write_text
from .layout import EXPORT_MARKER, ITER_NAME, MARKER_FILE, latest_checkpoint

FORMAT_VERSION = 2
Kind = Literal["checkpoint", "export"]
MARKER_FILES: dict[str, str] = {"checkpoint": MARKER_FILE, "export": EXPORT_MARKER}
ENGINE_CONFIG_FILES = {"hf": "run_config.yaml", "megatron": "primus_run_config.yaml"}
"""Where each engine keeps our resolved config in an iteration folder (Megatron-Bridge owns run_config.yaml
in the megatron engine's)."""
HF_TOKENIZER_DIR = "tokenizer"
MEGATRON_BRIDGE_CONFIG = "run_config.yaml"


class Marker(BaseModel):
    """What a checkpoint or export folder holds and how it was made; paths are as the writing run saw them."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    format_version: int = FORMAT_VERSION
    kind: Kind = "checkpoint"
    engine: Literal["hf", "megatron"] | None = None
    """The engine that wrote the checkpoint (None only in an export record older than format_version 2)."""
    step: int | None = None
    lora: bool = False
    """Trained with LoRA: a checkpoint holds the adapter only, an export the merged model and adapter/."""
    optimizer_state: bool = False
    """The folder holds optimizer and LR-scheduler state (a run's checkpoint does; an import or export not)."""
    base_model: str | None = None
    """The HF model the run started from; a LoRA run's frozen base weights are read from there."""
    base_checkpoint: str | None = None
    """megatron LoRA: the Megatron checkpoint holding the frozen base weights."""
    tokenizer: str | None = None
    """The tokenizer: a folder relative to this one, or a path / hub id (see tokenizer_path)."""
    config_file: str | None = None
    """Our resolved run config, relative to this folder."""
    eos_token_id: int | list[int] | None = None
    template: str | None = None
    """The prompt template the data was rendered with."""
    template_date: str | None = None
    """The date the template wrote into system prompts in training (templates that carry one)."""
    transformer_impl: str | None = None
    config_changes: list[dict] = Field(default_factory=list)
    """Config changes accepted on resume: {"step": resumed at, "changes": {key: [old, new]}}."""
    checkpoint: str | None = None
    """export: the iteration folder it was made from (resolved)."""
    save: str | None = None
    """export: the checkpoint folder of that run (resolved)."""
    exported_at: str | None = None

    @computed_field
    @property
    def holds(self) -> str:
        """What the weights in the folder are: full_model, lora_adapter, merged_model(_and_lora_adapter)."""
        if self.kind == "export":
            return "merged_model_and_lora_adapter" if self.lora else "merged_model"
        return "lora_adapter" if self.lora else "full_model"

    def tokenizer_path(self, folder: Path) -> str | None:
        """The tokenizer to load for the checkpoint in `folder`."""
        if self.tokenizer is None:
            return self.base_model
        inside = Path(folder) / self.tokenizer
        return str(inside) if not Path(self.tokenizer).is_absolute() and inside.is_dir() else self.tokenizer

    def text(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2) + "\n"


def _upgraded(data: dict, kind: Kind) -> dict:
    """A record of an earlier format as the fields of this one."""
    if data.get("format_version", 0) >= 2:
        return data
    if kind == "export":
        return {**data, "kind": "export"}
    engine = data.get("engine", "megatron")
    defaults = {"engine": engine, "optimizer_state": True, "config_file": ENGINE_CONFIG_FILES.get(engine)}
    if engine == "hf":
        defaults["tokenizer"] = HF_TOKENIZER_DIR
    else:
        defaults["base_model"] = data.get("hf_source")
    return {**defaults, **{k: v for k, v in data.items() if k not in ("format_version", "hf_source")}}


def _megatron_bridge_marker(folder: Path) -> Marker | None:
    """What a Megatron-Bridge checkpoint without our marker says of itself, or None when it is not one."""
    config = folder / MEGATRON_BRIDGE_CONFIG
    if not config.is_file():
        return None
    try:
        hf_model = ((yaml.safe_load(config.read_text()) or {}).get("model") or {}).get("hf_model_id")
    except (OSError, yaml.YAMLError, AttributeError):
        hf_model = None
    step = ITER_NAME.match(folder.name)
    return Marker(engine="megatron", step=int(step.group(1)) if step else None, base_model=hf_model,
                  tokenizer=hf_model, transformer_impl="auto")


def read_marker(folder: str | Path, kind: Kind = "checkpoint") -> Marker | None:
    """The marker of the checkpoint or export in `folder`, in this format whatever format wrote it.

    None when there is none: no marker file (and, for a checkpoint, not a Megatron-Bridge one either).
    A marker that does not read raises ConfigError naming the file.
    """
    folder = Path(folder)
    path = folder / MARKER_FILES[kind]
    if not path.is_file():
        return _megatron_bridge_marker(folder) if kind == "checkpoint" else None
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        marker = Marker.model_validate(_upgraded(data, kind))
    except (OSError, ValueError, ValidationError) as err:
        raise ConfigError(f"{path}: damaged marker ({str(err).splitlines()[0]}); the folder is not a complete "
                          f"{kind}: use another one, or write it again") from None
    if marker.format_version > FORMAT_VERSION:
        raise ConfigError(f"{path}: marker format {marker.format_version} is newer than this primus-bridge reads "
                          f"({FORMAT_VERSION}); use the primus-bridge version that wrote it")
    return marker


def write_marker(folder: str | Path, marker: Marker) -> Path:
    """Write the marker of `folder` atomically; callers write it last, after everything it describes."""
    path = Path(folder) / MARKER_FILES[marker.kind]
    atomic_write_text(path, marker.text())
    return path


def checkpoint_engine(path: str | Path) -> str:
    """'hf' or 'megatron': the engine that wrote the (newest) checkpoint at `path`."""
    marker = read_marker(latest_checkpoint(path) or Path(path))
    return marker.engine if marker is not None and marker.engine else "megatron"


def export_marker(checkpoint: str | Path, step: int | None, trained: Marker | None, engine: str) -> Marker:
    """The marker of an export made from the iteration folder `checkpoint` (whose marker is `trained`)."""
    checkpoint = Path(checkpoint).resolve()
    carried = trained.model_dump(include={"lora", "base_model", "eos_token_id", "template", "template_date",
                                          "transformer_impl"}) if trained is not None else {}
    return Marker(kind="export", engine=engine, step=step, checkpoint=str(checkpoint), save=str(checkpoint.parent),
                  tokenizer=".", exported_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), **carried)


def read_export_marker(out: str | Path) -> Marker | None:
    """The marker of the export in `out`, or None when it has none that reads (a half-written or foreign folder)."""
    try:
        marker = read_marker(out, "export")
    except ConfigError:
        return None
    return marker if marker is not None and marker.checkpoint else None


def is_export_of(out: str | Path, checkpoint: str | Path) -> bool:
    """Whether `out` is a complete export of exactly this iteration folder."""
    marker = read_export_marker(out)
    return marker is not None and marker.checkpoint == str(Path(checkpoint).resolve())
