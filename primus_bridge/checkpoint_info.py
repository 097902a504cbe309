"""Find checkpoints on disk and tell which engine wrote them.

Both engines use Megatron's layout: `<save>/iter_0000100/` folders and
`latest_checkpointed_iteration.txt` naming the newest complete one (written last).
Each iteration folder also holds `primus_bridge.json` with {"engine": ...}.
"""

import json
from pathlib import Path

LATEST_FILE = "latest_checkpointed_iteration.txt"
MARKER_FILE = "primus_bridge.json"


def iteration_dir(save: Path, step: int) -> Path:
    return Path(save) / f"iter_{step:07d}"


def latest_iteration(save: str | Path) -> int | None:
    """The step recorded in the latest pointer, or None when there is no complete checkpoint."""
    pointer = Path(save) / LATEST_FILE
    try:
        text = pointer.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return int(text) if text.isdigit() else None


def latest_checkpoint(save: str | Path) -> Path | None:
    """The newest complete iteration folder, or `save` itself when it is one."""
    save = Path(save)
    if (save / MARKER_FILE).is_file():
        return save
    step = latest_iteration(save)
    return iteration_dir(save, step) if step is not None else None


def checkpoint_engine(path: str | Path) -> str:
    """'hf' or 'megatron': read from the marker file; Megatron-Bridge's own checkpoints have none."""
    ckpt = latest_checkpoint(path) or Path(path)
    marker = ckpt / MARKER_FILE
    if marker.is_file():
        return json.loads(marker.read_text()).get("engine", "megatron")
    return "megatron"
