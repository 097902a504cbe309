"""Training progress: a tqdm bar (step, loss, lr, tokens/s, ETA) on a terminal, plain log lines otherwise."""

import logging
import sys
import time

from ...run.secrets import redact
from .step import StepStats

log = logging.getLogger("primus_bridge")


def _eta(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class Progress:
    """Shown on the main rank only; `use_bar=None` picks the bar when stdout is a terminal."""

    def __init__(self, total_steps: int, start_step: int, log_interval: int, enabled: bool,
                 use_bar: bool | None = None):
        self.total, self.start, self.log_interval, self.enabled = total_steps, start_step, log_interval, enabled
        self.started = time.perf_counter()
        self.bar = None
        if enabled and (sys.stdout.isatty() if use_bar is None else use_bar):
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True, file=sys.stdout)

    def _eta_seconds(self, step: int) -> float:
        done = step - self.start
        return (time.perf_counter() - self.started) / done * (self.total - step) if done else 0.0

    def step(self, step: int, stats: StepStats, tokens_per_second: float) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{stats.loss:.4f}", lr=f"{stats.lr:.2e}", tok_s=f"{tokens_per_second:,.0f}")
        elif step % self.log_interval == 0 or step == self.total:
            log.info("step %d/%d | loss %.4f | lr %.3e | grad norm %.3f | %s tok/s | eta %s", step, self.total,
                     stats.loss, stats.lr, stats.grad_norm, f"{tokens_per_second:,.0f}", _eta(self._eta_seconds(step)))

    def note(self, message: str, *args) -> None:
        """A log line that does not break the bar."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(redact(message % args if args else message), file=sys.stdout)
        else:
            log.info(message, *args)

    def warn(self, message: str) -> None:
        """A warning that does not break the bar."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(f"warning: {redact(message)}", file=sys.stdout)
        else:
            log.warning(message)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
