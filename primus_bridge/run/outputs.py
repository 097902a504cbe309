"""Output-folder guard: a run never writes into a non-empty folder it did not create, unless told to.

A checkpoint folder that holds our own checkpoints is fine: the run resumes from it (or, with
`resume: false`, refuses unless `overwrite: true`, which starts over and replaces them).
An HF export folder holds its marker `primus_bridge_export.json` (checkpoint/marker.py), naming the
checkpoint it was made from: an export of the same checkpoint is reused as it is, one of an older
checkpoint of the same run is replaced, any other non-empty folder is left alone unless `overwrite: true`.
Temporaries of an export that was killed half-way are removed before the next one.
"""

import re
from dataclasses import dataclass
from pathlib import Path

from ..checkpoint import latest_iteration, read_export_marker
from ..checkpoint.store import STALE_TEMP
from ..config import ConfigError
from ..utils.paths import remove_all
from .lock import LOCK_FILE


@dataclass(frozen=True)
class CheckpointPlan:
    """What to do with the checkpoint folder: resume from `resume_step`, or start fresh (`clear_old` first)."""

    save: Path
    resume_step: int | None = None
    clear_old: bool = False


def _is_empty(folder: Path) -> bool:
    return not folder.exists() or all(STALE_TEMP.match(p.name) or p.name == LOCK_FILE for p in folder.iterdir())


def plan_checkpoint_dir(save: str | Path, resume: bool, overwrite: bool) -> CheckpointPlan:
    """Decide resume / fresh start for `checkpointing.save`, or raise ConfigError saying what to change."""
    save = Path(save)
    if save.exists() and not save.is_dir():
        raise ConfigError(f"checkpointing.save: {save} is a file, not a folder; choose a folder path")
    latest = latest_iteration(save)
    if latest is not None and resume:
        return CheckpointPlan(save, resume_step=latest)
    if latest is not None:
        if not overwrite:
            raise ConfigError(f"checkpointing.save: {save} holds checkpoints (latest step {latest}) and resume is "
                              "off; choose a fresh folder, or pass --overwrite to delete them and start over")
        return CheckpointPlan(save, clear_old=True)
    if not _is_empty(save) and not overwrite:
        raise ConfigError(f"checkpointing.save: {save} is not empty and holds no checkpoint of ours; choose an "
                          "empty folder, or pass --overwrite (checkpointing.overwrite: true) to write into it")
    return CheckpointPlan(save)


def _same_run(out: Path, checkpoint: Path | None) -> bool:
    marker = read_export_marker(out)
    return marker is not None and checkpoint is not None and marker.save == str(checkpoint.resolve().parent)


def check_export_dir(out: str | Path, overwrite: bool, key: str = "hf_save_path",
                     checkpoint: str | Path | None = None) -> Path:
    """Refuse an existing non-empty export folder unless it is an export of the same run as `checkpoint`
    (an iteration folder) or `overwrite` is set; either way it is then replaced atomically."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{key}: {out} is a file, not a folder; choose a folder path")
    ours = _same_run(out, Path(checkpoint) if checkpoint else None)
    if out.is_dir() and any(out.iterdir()) and not (overwrite or ours):
        raise ConfigError(f"{key}: {out} already exists and is not empty; choose another folder, or pass "
                          "--overwrite (checkpointing.overwrite: true) to replace it")
    return out


def stale_export_temporaries(out: str | Path) -> list[Path]:
    """Leftovers of an export killed half-way: the temporary and replaced folders beside `out`."""
    out = Path(out)
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.(.*\.tmp|old-\d+|exporting|replaced)$")
    if not out.parent.is_dir():
        return []
    return [p for p in out.parent.iterdir() if pattern.match(p.name)]


def remove_stale_export_temporaries(out: str | Path) -> list[str]:
    return remove_all(stale_export_temporaries(out))
