"""Our resolved config on the W&B / MLflow run that Megatron-Bridge opens (run/trackers.py has the settings).

The library attaches its own ConfigContainer; this adds the primus-bridge config the run was resolved from
(secrets redacted), under the same names as on the hf engine.
"""

from megatron.bridge.training.callbacks import Callback, CallbackContext

from ...config import PrimusConfig
from ...run.trackers import attach_config_to_mlflow, attach_config_to_wandb


class AttachRunConfig(Callback):
    """On the rank that holds the trackers (the last one), once training starts; elsewhere nothing."""

    def __init__(self, cfg: PrimusConfig):
        self.cfg = cfg

    def on_train_start(self, context: CallbackContext) -> None:
        wandb = context.state.wandb_logger  # opens the run, as the library's first log line would
        if wandb is not None:
            attach_config_to_wandb(wandb.run, self.cfg)
        mlflow = context.state.mlflow_logger
        if mlflow is not None:
            attach_config_to_mlflow(mlflow, self.cfg)
