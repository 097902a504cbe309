"""Is a weight or state file whole? Cheap checks that name the damaged file, run before anything loads it.

A safetensors file is checked by reading its header, which also proves the file is long enough for
every tensor it lists (a truncated, empty or foreign file fails here); a torch `.pt` file by opening it
memory-mapped, which reads its zip directory at the end of the file (a truncated file fails here); a
torch_dist checkpoint (Megatron-Core's format, written through torch.distributed.checkpoint) by comparing
each data file's size with the bytes its `.metadata` records in it. None reads the tensors themselves, so
checking a large model costs next to nothing.
"""

import json
import zipfile
from pathlib import Path

import torch

SAFETENSORS_INDEX = "model.safetensors.index.json"


def safetensors_problem(path: Path) -> str | None:
    """Why `path` is not a readable safetensors file, or None."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            handle.keys()
    except Exception as err:  # noqa: BLE001 - SafetensorError, OSError: every way a file can be damaged
        return f"{path}: damaged or not a safetensors file ({err})"
    return None


def torch_file_problem(path: Path) -> str | None:
    """Why `path` is not a readable torch.save file, or None."""
    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except FileNotFoundError:
        return f"{path}: missing"
    except Exception as err:  # noqa: BLE001 - RuntimeError / UnpicklingError / OSError from a damaged file
        return f"{path}: damaged or not a torch file ({str(err).splitlines()[0]})"
    return None


def zip_problem(path: Path) -> str | None:
    """Why `path` is not a whole torch.save (zip) archive, or None; nothing in it is unpickled."""
    try:
        with zipfile.ZipFile(path):
            pass
    except FileNotFoundError:
        return f"{path}: missing"
    except (OSError, zipfile.BadZipFile) as err:
        return f"{path}: damaged or not a torch file ({err})"
    return None


def torch_dist_problems(folder: Path) -> list[str]:
    """Every missing or truncated file of a torch_dist checkpoint folder, as its `.metadata` lists them."""
    from torch.distributed.checkpoint import FileSystemReader

    try:
        metadata = FileSystemReader(str(folder)).read_metadata()
    except Exception as err:  # noqa: BLE001 - FileNotFoundError, UnpicklingError, EOFError: missing or damaged
        return [f"{Path(folder) / '.metadata'}: missing or damaged ({type(err).__name__}: {err})"]
    needed: dict[str, int] = {}
    for info in (metadata.storage_data or {}).values():
        needed[info.relative_path] = max(needed.get(info.relative_path, 0), info.offset + info.length)
    problems = []
    for name, size in sorted(needed.items()):
        path = Path(folder) / name
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif path.stat().st_size < size:
            problems.append(f"{path}: truncated ({path.stat().st_size} of {size} bytes)")
    return problems


def json_problem(path: Path) -> str | None:
    try:
        json.loads(path.read_text())
    except FileNotFoundError:
        return f"{path}: missing"
    except (OSError, ValueError) as err:
        return f"{path}: damaged ({err})"
    return None


def weight_files(folder: Path) -> list[Path]:
    return sorted(Path(folder).glob("*.safetensors"))


def weight_folder_problems(folder: Path) -> list[str]:
    """Every damaged safetensors file in a model / adapter folder."""
    return [problem for path in weight_files(folder) if (problem := safetensors_problem(path))]


def local_model_folder(source: str) -> Path | None:
    """The folder holding the weights of `source`: a local folder, or a hub id's snapshot in the HF cache."""
    if Path(source).is_dir():
        return Path(source)
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(source, "config.json")
    except Exception:  # noqa: BLE001 - not a valid hub id: the loader says so itself
        return None
    return Path(found).parent if isinstance(found, str) else None


def file_holding(folder: Path, parameter: str) -> tuple[Path, str] | None:
    """(safetensors file in `folder`, its tensor name) storing `parameter` (a model's parameter name, which
    may carry wrapper prefixes the file does not)."""
    from safetensors import safe_open

    index = Path(folder) / SAFETENSORS_INDEX
    if index.is_file():
        weight_map = json.loads(index.read_text()).get("weight_map", {})
        names = {key: Path(folder) / file for key, file in weight_map.items()}
    else:
        names = {}
        for path in weight_files(folder):
            with safe_open(str(path), framework="pt") as handle:
                names.update({key: path for key in handle.keys()})
    for key, path in names.items():
        if parameter == key or parameter.endswith("." + key):
            return path, key
    return None
