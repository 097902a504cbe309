"""Space the run needs: /dev/shm for data-loader workers and RCCL/NCCL, free disk where checkpoints go."""

import os
import shutil
from pathlib import Path

from ..utils.paths import nearest_existing, write_problem
from .report import Check, Status

GIB = 1024**3
SHM_FIX = ("give the container more shared memory: docker run --ipc=host (or --shm-size=64g); "
           "Kubernetes: mount an emptyDir with medium: Memory at /dev/shm")


def shm_check(path: Path = Path("/dev/shm"), minimum_gib: float = 1, recommended_gib: float = 16) -> Check:
    """Docker's default /dev/shm is 64 MiB: workers and the shared-memory transport then die with bus errors."""
    try:
        stats = os.statvfs(path)
    except OSError as error:
        return Check("shm", Status.FAIL, f"{path} is not usable: {error}", SHM_FIX)
    size_gib = stats.f_frsize * stats.f_blocks / GIB
    detail = f"{path}: {size_gib:.1f} GiB"
    if size_gib < minimum_gib:
        return Check("shm", Status.FAIL, f"{detail}, below {minimum_gib:g} GiB: data-loader workers and "
                     "RCCL/NCCL shared-memory transport fail with bus errors", SHM_FIX)
    if size_gib < recommended_gib:
        return Check("shm", Status.WARN, f"{detail}, below the {recommended_gib:g} GiB recommended for 8 GPUs",
                     SHM_FIX)
    return Check("shm", Status.PASS, detail)


def checkpoint_disk_check(save: str | None, minimum_gib: float = 1, recommended_gib: float = 100) -> Check:
    """Free space and write access at checkpointing.save (or the nearest folder above it that exists).

    Write access is tested by creating a file there (utils/paths.py), as `train` does before it starts.
    """
    if not save:
        return Check("checkpoint-disk", Status.WARN, "checkpointing.save is not set: the run writes no checkpoint",
                     "pass --save /path/on/shared/storage")
    folder = nearest_existing(Path(save))
    problem = write_problem(save)
    if problem:
        return Check("checkpoint-disk", Status.FAIL, f"{save} is not writable by this user: {problem}",
                     f"choose a writable --save, or fix the ownership of {folder}; in a container, mount it writable")
    free_gib = shutil.disk_usage(folder).free / GIB
    detail = f"{free_gib:.0f} GiB free at {folder} (for {save})"
    if free_gib < minimum_gib:
        return Check("checkpoint-disk", Status.FAIL, detail, "free space there or point --save at a larger volume")
    if free_gib < recommended_gib:
        return Check("checkpoint-disk", Status.WARN, f"{detail}: a full checkpoint of an 8B model with its "
                     "optimizer state is about 100 GiB", "point --save at a larger volume, or keep fewer "
                     "checkpoints (checkpointing.keep_last) / save LoRA adapters only")
    return Check("checkpoint-disk", Status.PASS, detail)
