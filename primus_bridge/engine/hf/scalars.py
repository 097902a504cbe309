"""The run's scalars: loss, lr, grad norm, tokens/s per step; validation loss.

They go to TensorBoard (training.tensorboard_dir) and to W&B / MLflow (`logging:`, run/trackers.py), the same
names and values to each.
"""

from ...config import PrimusConfig
from ...run.trackers import open_trackers
from .step import StepStats


class TensorBoardWriter:
    def __init__(self, folder: str):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=folder)

    def log(self, values: dict[str, float], step: int) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)

    def close(self) -> None:
        self.writer.close()


class Scalars:
    """Writes on the main rank to every configured destination; with none, every call does nothing."""

    def __init__(self, cfg: PrimusConfig, enabled: bool):
        self.writers = []
        if not enabled:
            return
        if cfg.training.tensorboard_dir:
            self.writers.append(TensorBoardWriter(cfg.training.tensorboard_dir))
        try:
            self.writers += open_trackers(cfg)
        except BaseException:
            self.close()
            raise

    def _log(self, values: dict[str, float], step: int) -> None:
        for writer in self.writers:
            writer.log(values, step)

    def step(self, step: int, stats: StepStats, tokens_per_second: float) -> None:
        self._log({"train/loss": stats.loss, "train/lr": stats.lr, "train/grad_norm": stats.grad_norm,
                   "train/tokens_per_second": tokens_per_second}, step)

    def validation(self, step: int, loss: float, by_source: dict[str, float] | None = None) -> None:
        """valid/loss, and valid/loss/<source> for each source of a data mixture."""
        self._log({"valid/loss": loss} | {f"valid/loss/{name}": value for name, value in (by_source or {}).items()},
                  step)

    def close(self) -> None:
        for writer in self.writers:
            writer.close()
