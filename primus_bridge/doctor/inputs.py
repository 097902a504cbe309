"""The run's inputs are where the config says: training data, the HF model, the Megatron checkpoint."""

import os
from pathlib import Path

from ..checkpoint import latest_checkpoint
from .report import Check, Status

DATA_SUFFIXES = (".json", ".jsonl", ".parquet")
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")
MOUNT_HINT = "in a container, mount it (docker run -v /host/path:/path)"


def _unreadable(path: Path) -> str | None:
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as error:
        return f"{error.strerror or error}"
    return None


def data_path_check(data_path: str | None) -> Check:
    if not data_path:
        return Check("data", Status.WARN, "data.data_path is not set", "pass --data_path FILE_OR_FOLDER")
    path = Path(data_path)
    if not path.exists():
        return Check("data", Status.FAIL, f"{path} does not exist", f"check --data_path; {MOUNT_HINT}")
    files = sorted(p for p in path.rglob("*") if p.suffix in DATA_SUFFIXES) if path.is_dir() else [path]
    if not files:
        return Check("data", Status.FAIL, f"{path} holds no {', '.join(DATA_SUFFIXES)} files",
                     "point --data_path at JSON / JSON Lines / Parquet data")
    for file in files:
        problem = _unreadable(file)
        if problem:
            return Check("data", Status.FAIL, f"{file} is not readable: {problem}",
                         f"fix the permissions of {file} for this user")
    size_mib = sum(f.stat().st_size for f in files) / 2**20
    return Check("data", Status.PASS, f"{path}: {len(files)} file(s), {size_mib:.1f} MiB, readable")


def _local_model_check(path: Path) -> Check:
    if not (path / "config.json").is_file():
        return Check("hf-model", Status.FAIL, f"{path} has no config.json: not a HF model folder",
                     "point --hf_model_name_or_path at the folder save_pretrained wrote")
    if not any(next(path.glob(pattern), None) for pattern in WEIGHT_PATTERNS):
        return Check("hf-model", Status.FAIL, f"{path} has config.json but no weights (*.safetensors / *.bin)",
                     "copy the weight files into the folder")
    return Check("hf-model", Status.PASS, f"{path}: config.json and weights present")


def _cached_model_check(repo_id: str) -> Check:
    """A hub id must already be in the local HF cache: runs do not download."""
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        config = try_to_load_from_cache(repo_id, "config.json")
    except HFValidationError:
        return Check("hf-model", Status.FAIL, f"{repo_id} is neither a folder nor a hub id",
                     f"check --hf_model_name_or_path; {MOUNT_HINT}")
    if not isinstance(config, str):
        return Check("hf-model", Status.FAIL, f"{repo_id} is not a local folder and not in the HF cache "
                     f"({constants.HF_HUB_CACHE})", f"download it where there is internet (hf download {repo_id}) "
                     "into the same HF_HOME, or pass a local folder")
    return _local_model_check(Path(config).parent)


def hf_model_check(name_or_path: str | None) -> Check:
    if not name_or_path:
        return Check("hf-model", Status.SKIP, "hf_model_name_or_path is not set")
    path = Path(name_or_path)
    return _local_model_check(path) if path.exists() else _cached_model_check(name_or_path)


def load_check(load: str | None) -> Check:
    """model.load: a Megatron checkpoint folder with a complete iteration."""
    if not load:
        return Check("load", Status.SKIP, "model.load is not set")
    if not os.path.isdir(load):
        return Check("load", Status.FAIL, f"{load} does not exist", f"check --load; {MOUNT_HINT}")
    checkpoint = latest_checkpoint(load)
    if checkpoint is None:
        return Check("load", Status.FAIL, f"{load} has no latest_checkpointed_iteration.txt: no complete checkpoint",
                     "point --load at the folder the run saved into (it holds iter_NNNNNNN folders)")
    return Check("load", Status.PASS, f"{checkpoint}")
