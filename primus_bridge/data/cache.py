"""On-disk cache of tokenized, packed data, keyed by everything that changes the tokens.

Key: the data files' contents (sha256), the tokenizer (its serialized backend, chat template and special
tokens), the template, seq_length and every data option. A cache folder is written whole under a temporary
name and renamed into place (primus_bridge.utils.atomic), so an interrupted run leaves nothing that loads.
Arrays are .npy files opened as read-only memory maps.
"""

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from ..utils.atomic import atomic_dir

PIPELINE_VERSION = 1
"""Bump when the stored layout or the rendering / masking rules change: old caches then miss."""
DEFAULT_CACHE_DIR = Path(".cache/primus-bridge/data")
META = "meta.json"

log = logging.getLogger("primus_bridge")


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer) -> str:
    parts = {
        "backend": tokenizer.backend_tokenizer.to_str(),
        "chat_template": getattr(tokenizer, "chat_template", None) or "",
        "special": {"bos": tokenizer.bos_token, "eos": tokenizer.eos_token, "pad": tokenizer.pad_token},
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def cache_key(files: list[Path], tokenizer, settings: dict) -> str:
    """Hex key of the inputs; `settings` holds the template, seq_length and data options."""
    material = {
        "version": PIPELINE_VERSION,
        "files": [file_digest(path) for path in files],
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "settings": settings,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:32]


def cache_folder(cache_dir: str | None, key: str) -> Path:
    return Path(cache_dir).expanduser() / key if cache_dir else DEFAULT_CACHE_DIR / key


def save_cache(folder: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Write every array and meta.json, then rename the folder into place (replacing a broken one)."""
    with atomic_dir(folder, replace=True) as tmp:
        for name, values in arrays.items():
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(values))
        (tmp / META).write_text(json.dumps({**meta, "version": PIPELINE_VERSION, "arrays": sorted(arrays)}))


def load_cache(folder: Path) -> tuple[dict[str, np.ndarray], dict] | None:
    """(arrays as memory maps, meta), or None when there is no complete cache of this version."""
    meta_path = folder / META
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("version") != PIPELINE_VERSION:
            return None
        arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in meta["arrays"]}
    except (OSError, ValueError, KeyError) as err:
        log.warning("data cache %s is unreadable (%s); rebuilding it", folder, err)
        return None
    return arrays, meta
