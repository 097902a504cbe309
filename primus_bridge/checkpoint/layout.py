"""Where checkpoints and exports lie on disk.

Both engines use Megatron's layout: `<save>/iter_0000100/` folders and `latest_checkpointed_iteration.txt`
naming the newest complete one (written last). Each iteration folder holds the marker `primus_bridge.json`;
an HF export folder holds `primus_bridge_export.json` (see marker.py).
"""

import re
from pathlib import Path

LATEST_FILE = "latest_checkpointed_iteration.txt"
MARKER_FILE = "primus_bridge.json"
EXPORT_MARKER = "primus_bridge_export.json"
ITER_NAME = re.compile(r"^iter_(\d{7})$")


def iteration_dir(save: str | Path, step: int) -> Path:
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
