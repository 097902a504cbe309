"""A resumed run continues the run that wrote the checkpoint; config changes are checked against it.

The checkpoint holds the resolved config of the run that produced it. On resume every key is compared:
- a change the resumed run honours (how long to train, how often to log / evaluate / save, where to
  export, how the work is laid out on the GPUs) is allowed, logged and recorded with the next checkpoint;
- any other change is refused with the list of differences: the model, the LoRA shape and targets,
  the data and how it is rendered and packed, the seeds, and the optimizer settings, which the
  checkpoint's optimizer and scheduler state carry, would not be honoured (or would silently make a
  different run).
So the config written with each checkpoint is always the one that produced it.
"""

from pathlib import Path

import yaml

from ..checkpoint import read_marker
from ..config import ConfigError, PrimusConfig
from ..config.layers import flatten
from ..config.yaml_source import deep_merge
from .secrets import redact_values

HONOURED_KEYS = (
    "engine", "recipe", "gpu", "force", "convert_to_hf", "hf_save_path",
    "training.train_iters", "training.eval_interval", "training.eval_iters", "training.log_interval",
    "training.tensorboard_dir", "training.clip_grad", "training.skip_nonfinite_steps",
    "data.cache_dir", "data.num_workers",
    "model.attn_implementation", "model.liger_kernel",
    "checkpointing.",
    "parallelism.", "activation_checkpointing.", "profiling.", "logging.",
)
"""Keys (or section prefixes ending in '.') whose change a resumed run honours."""


def config_dump(cfg: PrimusConfig) -> str:
    """The resolved config as it is written beside a checkpoint (secrets redacted)."""
    return yaml.safe_dump(redact_values(cfg.model_dump(mode="json")), sort_keys=False, allow_unicode=True)


def checkpoint_config(iteration: Path) -> dict | None:
    """The resolved config stored in an iteration folder, or None when it holds none that reads."""
    try:
        marker = read_marker(iteration)
        if marker is None or marker.config_file is None:
            return None
        data = yaml.safe_load((iteration / marker.config_file).read_text())
    except (OSError, ConfigError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def _honoured(key: str) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in HONOURED_KEYS)


def config_changes(saved: dict, cfg: PrimusConfig) -> tuple[dict, dict]:
    """(refused, honoured): {dotted key: (checkpoint's value, new value)} for every key that differs.

    Keys the checkpoint predates count as their default; keys no longer in the schema are ignored.
    """
    old = flatten(deep_merge(PrimusConfig().model_dump(mode="json"), saved))
    new = flatten(yaml.safe_load(config_dump(cfg)))
    refused, honoured = {}, {}
    for key, value in new.items():
        before = old.get(key)
        if before != value:
            (honoured if _honoured(key) else refused)[key] = (before, value)
    return refused, honoured


def _listed(changes: dict) -> str:
    return "; ".join(f"{key}: {old!r} -> {new!r}" for key, (old, new) in sorted(changes.items()))


def check_resume_config(iteration: Path, cfg: PrimusConfig) -> dict:
    """The honoured changes against the checkpoint in `iteration`; ConfigError listing the refused ones."""
    saved = checkpoint_config(iteration)
    if saved is None:
        return {}
    refused, honoured = config_changes(saved, cfg)
    if refused:
        raise ConfigError(f"resume: {iteration} was written by a run with a different config; a resumed run "
                          f"cannot honour these changes: {_listed(refused)}. Put them back, or start a new run in "
                          "a fresh --save folder (or --no_resume --overwrite to replace these checkpoints)")
    return honoured


def describe_honoured(changes: dict) -> str:
    return _listed(changes)


def changes_record(step: int, changes: dict) -> dict:
    """How a checkpoint records the changes accepted when the run resumed at `step`."""
    return {"step": step, "changes": {key: [old, new] for key, (old, new) in sorted(changes.items())}}
