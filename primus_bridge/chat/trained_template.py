"""The prompt template a model was trained with, as its checkpoint or HF export records it.

A checkpoint's iteration folder (`primus_bridge.json`) and an HF export (`primus_bridge_export.json`) both carry
the marker keys `template` and `template_date` (the date templates such as llama3.1 write into the system
header). A PEFT adapter saved inside an export (`<export>/adapter`) is covered by the export's marker.
"""

from dataclasses import dataclass
from pathlib import Path

from ..checkpoint import EXPORT_MARKER, MARKER_FILE, latest_checkpoint, read_marker


@dataclass(frozen=True)
class TrainedTemplate:
    name: str
    template_date: str | None
    recorded_in: Path
    """The marker file that names it."""


def _candidates(folder: Path, with_parent: bool) -> list[tuple[Path, str]]:
    folders = [folder, folder.parent] if with_parent else [folder]
    found = [(f, "export") for f in folders if (f / EXPORT_MARKER).is_file()]
    checkpoint = latest_checkpoint(folder)
    return found + ([(checkpoint, "checkpoint")] if checkpoint is not None else [])


def read_trained_template(folder: str | Path, with_parent: bool = False) -> TrainedTemplate | None:
    """The template recorded for the model in `folder` (an export, a checkpoint folder or iteration folder;
    with_parent: also the folder above, for an adapter inside an export), or None when none is recorded."""
    folder = Path(folder)
    for where, kind in _candidates(folder, with_parent):
        marker = read_marker(where, kind)
        if marker is not None and marker.template:
            name = EXPORT_MARKER if kind == "export" else MARKER_FILE
            return TrainedTemplate(marker.template, marker.template_date, where / name)
    return None
