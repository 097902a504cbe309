"""Checkpoints and HF exports on disk: where they lie, the marker saying what each holds, safe writes, checks.

- layout.py: `<save>/iter_NNNNNNN/` folders and the `latest_checkpointed_iteration.txt` pointer;
- marker.py: the one typed, versioned marker of both engines (`primus_bridge.json` in a checkpoint,
  `primus_bridge_export.json` in an export) and `read_marker`, which also reads earlier formats;
- store.py: atomic checkpoint writes, pruning (keep_last), falling back past a damaged checkpoint;
- integrity.py: cheap checks that a weight or state file is whole.

The engines import this package; it imports no engine.
"""

from .layout import EXPORT_MARKER, LATEST_FILE, MARKER_FILE, iteration_dir, latest_checkpoint, latest_iteration
from .marker import (
    FORMAT_VERSION,
    Marker,
    checkpoint_engine,
    export_marker,
    is_export_of,
    read_export_marker,
    read_marker,
    write_marker,
)

__all__ = [
    "EXPORT_MARKER", "FORMAT_VERSION", "LATEST_FILE", "MARKER_FILE", "Marker", "checkpoint_engine", "export_marker",
    "is_export_of", "iteration_dir", "latest_checkpoint", "latest_iteration", "read_export_marker", "read_marker",
    "write_marker",
]
