"""Can this process write at a path that may not exist yet, and how much room is there?

Both questions are answered at the nearest folder that exists: that is where the first mkdir happens.
Writability is tested by creating (and removing) a file there, the only test that also holds for root,
read-only mounts, full quotas and network filesystems, where permission bits alone say too little.
"""

import os
import shutil
import tempfile
from pathlib import Path


def nearest_existing(path: str | Path) -> Path:
    """`path` itself when it exists, else the closest folder above it that does."""
    path = Path(path).expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def write_problem(path: str | Path) -> str | None:
    """Why files cannot be created at `path` (a folder, created when missing), or None when they can."""
    folder = nearest_existing(path)
    if not folder.is_dir():
        return f"{folder} is a file, not a folder"
    try:
        fd, probe = tempfile.mkstemp(prefix=".primus-bridge-write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        return f"cannot create files in {folder} ({err.strerror or err})"
    return None


def free_bytes(path: str | Path) -> int:
    """Free bytes for this user on the filesystem that would hold `path`."""
    return shutil.disk_usage(nearest_existing(path)).free


def filesystem_id(path: str | Path) -> int:
    """Device number of the filesystem that would hold `path` (equal ids share free space)."""
    return nearest_existing(path).stat().st_dev


def remove_all(paths) -> list[str]:
    """Remove each path (a folder with its contents, or a file) as far as possible; their names."""
    removed = []
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path.name)
    return removed
