"""Output-folder guard: a run never writes into a non-empty folder it did not create, unless told to.

A checkpoint folder that holds our own checkpoints is fine: the run resumes from it (or, with
`resume: false`, refuses unless `overwrite: true`, which starts over and replaces them).
"""

from dataclasses import dataclass
from pathlib import Path

from ..checkpoint_info import latest_iteration
from ..config import ConfigError
from .checkpoints import STALE_TEMP


@dataclass(frozen=True)
class CheckpointPlan:
    """What to do with the checkpoint folder: resume from `resume_step`, or start fresh (`clear_old` first)."""

    save: Path
    resume_step: int | None = None
    clear_old: bool = False


def _is_empty(folder: Path) -> bool:
    return not folder.exists() or all(STALE_TEMP.match(p.name) for p in folder.iterdir())


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


def check_export_dir(out: str | Path, overwrite: bool, key: str = "hf_save_path") -> Path:
    """Refuse an existing non-empty export folder unless `overwrite` (then it is replaced atomically)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{key}: {out} is a file, not a folder; choose a folder path")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{key}: {out} already exists and is not empty; choose another folder, or pass "
                          "--overwrite (checkpointing.overwrite: true) to replace it")
    return out
