"""`logging:` — experiment trackers (Weights & Biases, MLflow) beside TensorBoard (training.tensorboard_dir).

Each tracker is off by default. When on, it gets the same scalars as TensorBoard on both engines and the
resolved config (secrets redacted). API keys and passwords are never config keys: the trackers read them
from their own environment variables (WANDB_API_KEY, MLFLOW_TRACKING_TOKEN, MLFLOW_TRACKING_PASSWORD).
"""

from urllib.parse import urlsplit

from pydantic import Field, model_validator

from .base import Section


class WandbConfig(Section):
    enabled: bool = False
    """Log to Weights & Biases (needs the wandb package: pip install 'primus-bridge[logging]')."""
    project: str | None = None
    """W&B project (required when enabled)."""
    run_name: str | None = None
    """Run name shown in W&B; default: the checkpoint folder's name, else primus-bridge."""
    entity: str | None = None
    """W&B team or user; default: the API key's default entity."""
    offline: bool = False
    """Write the run to disk only (WANDB_MODE=offline); upload it later with `wandb sync <dir>/wandb/offline-run-*`."""
    dir: str | None = None
    """Folder that gets the `wandb/` run folder; default: $WANDB_DIR, else the working directory."""

    @model_validator(mode="after")
    def _project_when_enabled(self):
        if self.enabled and not self.project:
            raise ValueError("logging.wandb.project: required when logging.wandb.enabled is true; name the W&B project")
        return self


class MlflowConfig(Section):
    enabled: bool = False
    """Log to MLflow (needs the mlflow package: pip install 'primus-bridge[logging]')."""
    project: str | None = None
    """MLflow experiment name (required when enabled)."""
    run_name: str | None = None
    """Run name shown in MLflow; default: the checkpoint folder's name, else primus-bridge."""
    tracking_uri: str | None = None
    """Tracking server, e.g. http://mlflow:5000; default: $MLFLOW_TRACKING_URI, else a local store in `dir`.
    Credentials go in MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN), not here."""
    offline: bool = False
    """Write to a local file store in `dir` only, whatever tracking_uri and $MLFLOW_TRACKING_URI say."""
    dir: str = "mlruns"
    """Local file store for offline mode (and when no tracking server is set)."""

    @model_validator(mode="after")
    def _project_when_enabled(self):
        if self.enabled and not self.project:
            raise ValueError("logging.mlflow.project: required when logging.mlflow.enabled is true; name the MLflow "
                             "experiment")
        return self

    @model_validator(mode="after")
    def _no_secret_in_uri(self):
        if self.tracking_uri and urlsplit(self.tracking_uri).password:
            raise ValueError("logging.mlflow.tracking_uri: holds a password; remove it from the URI and set "
                             "MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD in the environment instead")
        return self

    @model_validator(mode="after")
    def _offline_or_server(self):
        if self.offline and self.tracking_uri:
            raise ValueError("logging.mlflow.offline: true and logging.mlflow.tracking_uri are both set; offline "
                             "writes to the local store in logging.mlflow.dir only, so choose one")
        return self


class LoggingConfig(Section):
    wandb: WandbConfig = Field(default_factory=WandbConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
