"""TensorBoard scalars (training.tensorboard_dir): loss, lr, grad norm, tokens/s per step; validation loss."""

from .step import StepStats


class Scalars:
    """Writes on the main rank when a folder is configured; otherwise every call does nothing."""

    def __init__(self, folder: str | None, enabled: bool):
        self.writer = None
        if folder and enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=folder)

    def step(self, step: int, stats: StepStats, tokens_per_second: float) -> None:
        if self.writer is None:
            return
        for name, value in (("train/loss", stats.loss), ("train/lr", stats.lr), ("train/grad_norm", stats.grad_norm),
                            ("train/tokens_per_second", tokens_per_second)):
            self.writer.add_scalar(name, value, step)

    def validation(self, step: int, loss: float) -> None:
        if self.writer is not None:
            self.writer.add_scalar("valid/loss", loss, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
