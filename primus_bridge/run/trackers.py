"""Weights & Biases and MLflow (`logging:`): their settings, the resolved config they get, the hf engine's writers.

The megatron engine hands these settings to Megatron-Bridge's own W&B and MLflow writers, which log what its
TensorBoard writer logs (engine/megatron/container.py, engine/megatron/trackers.py); the hf engine writes
through `open_trackers` the scalars it writes to TensorBoard. Either way the run gets the resolved primus-bridge
config (secrets redacted) under `primus_bridge`: W&B run config, MLflow params and a YAML artifact.
"""

import importlib
import importlib.util
import logging
import os
from pathlib import Path

import yaml

from ..config import ConfigError, PrimusConfig
from ..config.layers import flatten
from ..config.sections.logging import MlflowConfig, WandbConfig
from .resume_config import config_dump

log = logging.getLogger("primus_bridge")

TRACKERS = ("wandb", "mlflow")
CONFIG_KEY = "primus_bridge"
"""The resolved config's key in the W&B run config and prefix of its MLflow params."""
CONFIG_ARTIFACT = "primus_bridge_config.yaml"
DEFAULT_RUN_NAME = "primus-bridge"


def enabled_trackers(cfg: PrimusConfig) -> list[str]:
    return [name for name in TRACKERS if getattr(cfg.logging, name).enabled]


def _not_installed(name: str) -> str:
    return (f"logging.{name}.enabled: the {name} package is not installed in this environment; install it "
            f"(pip install 'primus-bridge[logging]') or set logging.{name}.enabled: false")


def missing_package_problems(cfg: PrimusConfig) -> list[str]:
    """One problem per enabled tracker whose package cannot be imported (checked before any training)."""
    return [_not_installed(name) for name in enabled_trackers(cfg) if importlib.util.find_spec(name) is None]


def import_tracker(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ConfigError(_not_installed(name)) from None


def run_name(cfg: PrimusConfig, section: WandbConfig | MlflowConfig) -> str:
    if section.run_name:
        return section.run_name
    return Path(cfg.checkpointing.save).name if cfg.checkpointing.save else DEFAULT_RUN_NAME


def wandb_dir(section: WandbConfig) -> str:
    """The folder that gets W&B's `wandb/` run folders (never the checkpoint folder: it must hold only ours)."""
    return section.dir or os.environ.get("WANDB_DIR") or "."


def mlflow_tracking_uri(section: MlflowConfig) -> str:
    """The server, or the local file store in `dir` (offline, or when neither config nor environment names one)."""
    server = None if section.offline else section.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    return server or Path(section.dir).resolve().as_uri()


def tracker_folders(cfg: PrimusConfig) -> list[tuple[str, str]]:
    """(config key, folder) of the local folders the enabled trackers write."""
    w, m, folders = cfg.logging.wandb, cfg.logging.mlflow, []
    if w.enabled:
        folders.append(("logging.wandb.dir", wandb_dir(w)))
    if m.enabled and mlflow_tracking_uri(m).startswith("file:"):
        folders.append(("logging.mlflow.dir", m.dir))
    return folders


def tracker_environment(cfg: PrimusConfig) -> dict[str, str]:
    """Settings the trackers read from the environment only.

    W&B's offline mode is WANDB_MODE=offline (Megatron-Bridge's LoggerConfig has no field for it). MLflow 3 keeps
    its file store, the one that needs no server and no database package, behind MLFLOW_ALLOW_FILE_STORE.
    """
    env, w, m = {}, cfg.logging.wandb, cfg.logging.mlflow
    if w.enabled and w.offline:
        env["WANDB_MODE"] = "offline"
    if m.enabled and mlflow_tracking_uri(m).startswith("file:"):
        env["MLFLOW_ALLOW_FILE_STORE"] = "true"
    return env


def prepare_trackers(cfg: PrimusConfig) -> None:
    """Before a tracker starts: its environment settings, and the W&B folder (W&B does not create it)."""
    os.environ.update(tracker_environment(cfg))
    if cfg.logging.wandb.enabled:
        Path(wandb_dir(cfg.logging.wandb)).mkdir(parents=True, exist_ok=True)


def resolved_config(cfg: PrimusConfig) -> dict:
    """The config as written beside a checkpoint: resolved, secrets redacted."""
    return yaml.safe_load(config_dump(cfg))


def mlflow_params(cfg: PrimusConfig) -> dict[str, str]:
    """The resolved config as MLflow params: `primus_bridge.<dotted key>` -> value as text."""
    return {f"{CONFIG_KEY}.{key}": str(value) for key, value in flatten(resolved_config(cfg)).items()}


def attach_config_to_wandb(run, cfg: PrimusConfig) -> None:
    run.config.update({CONFIG_KEY: resolved_config(cfg)}, allow_val_change=True)


def attach_config_to_mlflow(mlflow, cfg: PrimusConfig) -> None:
    """Params for comparing runs, and the YAML itself as an artifact (usable as a --config again)."""
    mlflow.log_params(mlflow_params(cfg))
    mlflow.log_text(config_dump(cfg), CONFIG_ARTIFACT)


class WandbWriter:
    def __init__(self, cfg: PrimusConfig):
        wandb, w = import_tracker("wandb"), cfg.logging.wandb
        self.run = wandb.init(project=w.project, entity=w.entity, name=run_name(cfg, w), dir=wandb_dir(w),
                              mode="offline" if w.offline else None)
        attach_config_to_wandb(self.run, cfg)
        if w.offline:
            log.info("W&B: offline run in %s; upload it with `wandb sync %s`", self.run.dir, Path(self.run.dir).parent)

    def log(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()


class MlflowWriter:
    def __init__(self, cfg: PrimusConfig):
        self.mlflow, m = import_tracker("mlflow"), cfg.logging.mlflow
        uri = mlflow_tracking_uri(m)
        self.mlflow.set_tracking_uri(uri)
        self.mlflow.set_experiment(m.project)
        self.run = self.mlflow.start_run(run_name=run_name(cfg, m))
        attach_config_to_mlflow(self.mlflow, cfg)
        log.info("MLflow: run %s of experiment %s at %s", self.run.info.run_id, m.project, uri)

    def log(self, values: dict[str, float], step: int) -> None:
        self.mlflow.log_metrics(values, step=step)

    def close(self) -> None:
        self.mlflow.end_run()


WRITERS = {"wandb": WandbWriter, "mlflow": MlflowWriter}


def open_trackers(cfg: PrimusConfig) -> list[WandbWriter | MlflowWriter]:
    """A started writer per enabled tracker (the hf engine's main rank); none is left open when one fails."""
    prepare_trackers(cfg)
    writers = []
    try:
        for name in enabled_trackers(cfg):
            writers.append(WRITERS[name](cfg))
    except BaseException:
        for writer in writers:
            writer.close()
        raise
    return writers
