"""Where a run's starting weights come from.

- `--convert_from_hf --hf_model_name_or_path X`: X is a local folder or a hub id already in the local
  HF cache (there is no network). It is imported once with Megatron-Bridge's `AutoBridge` into a
  Megatron checkpoint cached next to the run (`<save>.hf_import`) and reused by later runs and resumes.
- `--load CKPT`: a Megatron checkpoint (one imported here, or written by a previous run).
"""

import hashlib
import json
import logging
import multiprocessing
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ...config import ConfigError, PrimusConfig
from ...utils.atomic import atomic_dir
from .layer_spec import use_local_spec
from .process_group import single_process_group
from .rope import checked_hf_rope, use_hf_rope

log = logging.getLogger("primus_bridge")

IMPORT_MARKER = "primus_hf_import.json"
DEFAULT_IMPORT_CACHE = Path(".cache/primus-bridge/hf_import")
IMPORT_WAIT_SECONDS = 6 * 3600


@dataclass(frozen=True)
class HFSource:
    path: Path
    """Local folder with config.json (and the weights and tokenizer)."""
    config: dict


def resolve_hf_model(name_or_path: str, key: str = "hf_model_name_or_path") -> HFSource:
    """A local folder, or the snapshot of a hub id in the local HF cache; a clear error otherwise."""
    local = Path(name_or_path).expanduser()
    if not local.is_dir():
        local = _from_hf_cache(name_or_path, key)
    config_file = local / "config.json"
    if not config_file.is_file():
        raise ConfigError(f"{key}: {name_or_path!r} has no config.json; pass a HF model folder "
                          "(saved with save_pretrained)")
    return HFSource(local, json.loads(config_file.read_text()))


def _from_hf_cache(name: str, key: str) -> Path:
    looks_like_hub_id = name.count("/") == 1 and not name.startswith((".", "/", "~"))
    if looks_like_hub_id:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            return Path(snapshot_download(repo_id=name, local_files_only=True))
        except (LocalEntryNotFoundError, FileNotFoundError, ValueError):
            pass
    raise ConfigError(f"{key}: {name!r} is not a local folder and not in the local HF cache "
                      f"(HF_HOME={os.environ.get('HF_HOME', '~/.cache/huggingface')}); there is no network "
                      "here: download the model where there is network and pass its local folder")


def check_supported_architecture(source: HFSource, key: str = "hf_model_name_or_path") -> None:
    from megatron.bridge import AutoBridge

    architectures = source.config.get("architectures") or []
    supported = AutoBridge.list_supported_models()
    if not any(arch in supported for arch in architectures):
        raise ConfigError(f"{key}: architecture {', '.join(architectures) or '(none in config.json)'} is not "
                          f"supported by Megatron-Bridge's AutoBridge; supported: {', '.join(supported)}")


def import_cache_dir(cfg: PrimusConfig, source: HFSource) -> Path:
    """`<save>.hf_import` beside the checkpoint folder (inside it would make it look non-empty)."""
    if cfg.checkpointing.save:
        save = Path(cfg.checkpointing.save)
        return save.with_name(f"{save.name}.hf_import")
    digest = hashlib.sha256(str(source.path.resolve()).encode()).hexdigest()[:16]
    return DEFAULT_IMPORT_CACHE / digest


def _import_key(source: HFSource) -> dict:
    config_digest = hashlib.sha256((source.path / "config.json").read_bytes()).hexdigest()
    return {"source": str(source.path.resolve()), "config_sha256": config_digest}


def cached_import(out: Path, source: HFSource) -> bool:
    """Whether `out` already holds the import of this source; another source there is an error."""
    marker = out / IMPORT_MARKER
    if not marker.is_file():
        return False
    recorded = json.loads(marker.read_text())
    if recorded != _import_key(source):
        raise ConfigError(f"{out} holds an import of {recorded.get('source')}, not {source.path}; use another "
                          "checkpointing.save folder or delete that .hf_import folder")
    return True


def import_hf_checkpoint(source: HFSource, out: Path, transformer_impl: str) -> Path:
    """Convert the HF model into a Megatron checkpoint at `out` (written atomically; CPU, one process)."""
    from megatron.bridge import AutoBridge

    check_supported_architecture(source)
    rope = checked_hf_rope(source.path)
    if not torch.cuda.is_available():
        raise ConfigError("convert_from_hf: writing a Megatron checkpoint needs a GPU here (Megatron-Bridge's "
                          "checkpoint writer records the CUDA RNG state); run the import on a GPU machine")
    log.info("importing %s into a Megatron checkpoint at %s", source.path, out)
    with single_process_group(), atomic_dir(out, replace=True) as tmp:
        bridge = AutoBridge.from_hf_pretrained(str(source.path))
        provider = bridge.to_megatron_provider(load_weights=True)
        if transformer_impl == "local":
            use_local_spec(provider)
        use_hf_rope(provider, rope)
        provider.finalize()
        model = provider.provide_distributed_model(wrap_with_ddp=False, use_cpu_initialization=True)
        bridge.save_megatron_model(model, tmp, hf_tokenizer_path=str(source.path), low_memory_save=True)
        (tmp / IMPORT_MARKER).write_text(json.dumps(_import_key(source), indent=2) + "\n")
    return out


def _import_child(source_path: str, out: str, transformer_impl: str, errors) -> None:
    """Entry point of the import process (spawned: Megatron's global state stays out of the trainer)."""
    from .runtime import prepare_megatron

    prepare_megatron()
    try:
        import_hf_checkpoint(resolve_hf_model(source_path), Path(out), transformer_impl)
    except ConfigError as err:
        errors.send(err.messages)
        raise SystemExit(2) from None
    errors.send([])


def import_in_child_process(source: HFSource, out: Path, transformer_impl: str) -> Path:
    """Run the import in a fresh process. Megatron-Bridge's checkpoint writer initialises process-wide
    state (the rerun state machine, parallel state) that finetune() must initialise itself afterwards."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_import_child, args=(str(source.path), str(out), transformer_impl, send))
    child.start()
    child.join()
    messages = receive.recv() if receive.poll() else None
    if messages:
        raise ConfigError(messages)
    if child.exitcode != 0:
        raise RuntimeError(f"importing {source.path} failed in the import process (exit code {child.exitcode}); "
                           "its error is printed above")
    return out


def ensure_imported(cfg: PrimusConfig, source: HFSource, transformer_impl: str) -> Path:
    """Rank 0 imports (once, in a child process); the other ranks wait for the finished folder."""
    out = import_cache_dir(cfg, source)
    if cached_import(out, source):
        log.info("reusing the Megatron import of %s at %s", source.path, out)
        return out
    if int(os.environ.get("RANK", "0")) == 0:
        return import_in_child_process(source, out, transformer_impl)
    deadline = time.monotonic() + IMPORT_WAIT_SECONDS
    while not cached_import(out, source):
        if time.monotonic() > deadline:
            raise TimeoutError(f"rank {os.environ.get('RANK')}: no finished HF import at {out} after "
                               f"{IMPORT_WAIT_SECONDS} s; see rank 0's log")
        time.sleep(5)
    return out
