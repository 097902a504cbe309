"""Checkpoint folders in Megatron's layout, written so that a crash never leaves the latest one unloadable.

Order of a save: the iteration folder is written under a temporary name, fsynced and renamed into
place; then `latest_checkpointed_iteration.txt` is replaced atomically; only then are old folders pruned.
"""

import errno
import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from ..config import ConfigError
from ..utils.atomic import atomic_dir, atomic_write_text
from ..utils.paths import remove_all
from .layout import ITER_NAME, LATEST_FILE, iteration_dir, latest_iteration
from .marker import read_marker

NO_SPACE_SIGNS = ("No space left on device", "Disk quota exceeded", "unexpected pos", "file write failed")
"""How writers report a full filesystem: OSError's text, and torch.save's zip writer ('unexpected pos')."""
STALE_TEMP = re.compile(r"^\.(iter_\d{7}|latest_checkpointed_iteration\.txt)\.(.*\.tmp|old-\d+)$")

log = logging.getLogger("primus_bridge")


def saved_steps(save: Path) -> list[int]:
    """Steps of the complete-looking iteration folders under `save`, oldest first."""
    if not save.is_dir():
        return []
    return sorted(int(m.group(1)) for p in save.iterdir() if p.is_dir() and (m := ITER_NAME.match(p.name)))


def out_of_space(err: BaseException) -> bool:
    """Whether a write failed because the filesystem (or the user's quota) is full."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return any(sign in str(err) for sign in NO_SPACE_SIGNS)


def no_space_error(key: str, what: str, err: BaseException) -> ConfigError:
    return ConfigError(f"{key}: the filesystem is full: writing {what} failed ({str(err).splitlines()[0]}); what "
                       "was there before is intact. Free space or choose a larger volume, then rerun")


def write_checkpoint(save: Path, step: int, fill: Callable[[Path], None], keep_last: int | None = None) -> Path:
    """Call fill(folder) on a temporary folder, publish it as iter_<step>, move the pointer, prune.

    A full filesystem is reported as such (ConfigError); the previous checkpoint stays the latest.
    """
    final = iteration_dir(save, step)
    try:
        with atomic_dir(final, replace=True) as tmp:
            fill(tmp)
        atomic_write_text(Path(save) / LATEST_FILE, f"{step}\n")
    except Exception as err:
        if out_of_space(err):
            raise no_space_error("checkpointing.save", f"the checkpoint of step {step} to {final}", err) from err
        raise
    if keep_last:
        prune_checkpoints(Path(save), keep_last)
    return final


def prune_checkpoints(save: Path, keep_last: int) -> list[int]:
    """Delete all but the newest `keep_last` iteration folders; the one the pointer names is always kept."""
    latest = latest_iteration(save)
    steps = [s for s in saved_steps(save) if latest is None or s <= latest]
    doomed = [s for s in steps[:-keep_last] if s != latest]
    for step in doomed:
        shutil.rmtree(iteration_dir(save, step), ignore_errors=True)
    if doomed:
        log.info("checkpoints: pruned %s (keep_last=%d)", ", ".join(f"iter_{s:07d}" for s in doomed), keep_last)
    return doomed


def remove_stale_temporaries(save: Path) -> list[str]:
    """Remove half-written temporaries left by a crash during a save (they were never published)."""
    if not save.is_dir():
        return []
    return remove_all(path for path in save.iterdir() if STALE_TEMP.match(path.name))


def newest_loadable(save: Path, latest: int, engine: str, problems: Callable[[Path], list[str]]) -> tuple[int, Path]:
    """The newest iteration folder up to step `latest` (the pointer's, then older ones keep_last retained) whose
    files are whole, as `problems(folder)` (the engine's check) finds; a warning names each damaged one skipped.

    A checkpoint of another engine is returned as it is: the caller refuses it, saying what it is.
    """
    damaged = []
    for step in sorted((s for s in saved_steps(save) if s <= latest), reverse=True):
        folder = iteration_dir(save, step)
        try:
            marker = read_marker(folder)
            found = [] if marker is not None and marker.engine not in (None, engine) else problems(folder)
        except ConfigError as err:
            found = err.messages
        if not found:
            if damaged:
                log.warning("resume: falling back to step %d, the newest checkpoint in %s whose files load "
                            "(damaged: %s)", step, save, "; ".join(damaged))
            return step, folder
        log.warning("resume: checkpoint %s is damaged: %s", folder, "; ".join(found))
        damaged.append(folder.name)
    raise ConfigError(f"checkpointing.save: no checkpoint in {save} loads (damaged: {', '.join(damaged)}); "
                      "restore one from a copy, or pass --no_resume --overwrite to start over")


def remove_checkpoints(save: Path) -> None:
    """Forget every checkpoint in `save` (pointer first, so no reader sees a pointer to a missing folder)."""
    (Path(save) / LATEST_FILE).unlink(missing_ok=True)
    for step in saved_steps(Path(save)):
        shutil.rmtree(iteration_dir(save, step), ignore_errors=True)
