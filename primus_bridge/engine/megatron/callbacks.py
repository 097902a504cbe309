"""Megatron-Bridge training callbacks: what TrainResult reports, and our checkpoint markers.

- StepRecorder: wall time, loss and peak memory of every optimizer step run in this process.
- CheckResumedAdam: a resumed run's Adam step counts came back from the checkpoint.
- ProfileSteps: the `profiling:` window (run/profiler.py) around Megatron-Bridge's steps.
- CheckpointMarkers: after each save, our marker `primus_bridge.json` (checkpoint/marker.py) in the iteration
  folder and the `latest_checkpointed_iteration.txt` pointer (Megatron-Bridge itself tracks `latest_train_state.pt`),
  so every tool of the project finds and recognises the checkpoint.
"""

import time
from pathlib import Path

import torch
import torch.distributed as dist
from megatron.bridge.training.callbacks import Callback, CallbackContext

from ...checkpoint import LATEST_FILE, Marker, iteration_dir, write_marker
from ...config import ConfigError
from ...run.nonfinite import first_nonfinite_parameter
from ...run.profiler import StepProfiler
from ...utils.atomic import atomic_write_text

LOSS_KEY = "lm loss"


def is_rank0() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class StepRecorder(Callback):
    def __init__(self):
        self.step_times: list[float] = []
        self.losses: list[float] = []
        self.eval_losses: dict[str, float] = {}
        """Validation loss by the step it followed (as the hf engine's TrainResult.extra has it); Megatron-Bridge's
        evaluation after the last step, on the next validation batches, replaces the loop's at that step."""
        self.skipped_steps: list[int] = []
        self.first_step: int | None = None
        self.last_step: int | None = None
        self.trainable_params: int | None = None
        self.total_params: int | None = None
        self._started = 0.0

    def on_train_start(self, context: CallbackContext) -> None:
        self.first_step = context.state.train_state.step
        params = [p for chunk in context.model for p in chunk.parameters()]
        self.total_params = sum(p.numel() for p in params)
        self.trainable_params = sum(p.numel() for p in params if p.requires_grad)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    def on_train_step_start(self, context: CallbackContext) -> None:
        _synchronize()
        self._started = time.perf_counter()

    @property
    def step_in_flight(self) -> int | None:
        """The run's step being computed now (None before training starts)."""
        done = self.last_step if self.last_step is not None else self.first_step
        return None if done is None else done + 1

    def on_train_step_end(self, context: CallbackContext) -> None:
        _synchronize()
        self.step_times.append(time.perf_counter() - self._started)
        # Megatron-Bridge fires this before it advances train_state.step: the step just run is step + 1.
        self.last_step = context.state.train_state.step + 1
        loss = (context.loss_dict or {}).get(LOSS_KEY)
        if loss is not None:
            self.losses.append(float(loss))
        if context.skipped_iter:
            self.skipped_steps.append(self.last_step)

    def on_eval_end(self, context: CallbackContext) -> None:
        loss = (context.total_loss_dict or {}).get(LOSS_KEY)
        if loss is not None:
            self.eval_losses[str(context.state.train_state.step)] = float(loss)


class RefuseNonfiniteWeights(Callback):
    """Before the first step, on every rank's share of the loaded model: a weight holding NaN or Inf stops the run
    (it would train and export NaN), naming the tensor and where the weights came from."""

    def __init__(self, source: str):
        self.source = source

    def on_train_start(self, context: CallbackContext) -> None:
        for chunk in context.model:
            name = first_nonfinite_parameter(chunk)
            if name is not None:
                raise ConfigError(f"{self.source}: tensor {name} (Megatron's name) holds NaN or Inf values; these "
                                  "weights would train and export NaN. Use an undamaged copy of the model "
                                  "(re-download it, or re-export it from a good checkpoint)")


def adam_step_counts(optimizers: list) -> set[float]:
    """The distinct per-parameter step counts of torch Adam optimizers (empty where Adam keeps none: Apex / TE)."""
    return {float(state["step"]) for optimizer in optimizers if optimizer is not None
            for state in optimizer.state.values() if isinstance(state.get("step"), torch.Tensor)}


def resumed_adam_problem(resumed_at: int, counts: set[float]) -> str | None:
    """What is wrong with Adam's step counts on a run resumed after step `resumed_at` (None: nothing): every
    parameter's count is one number, above 0."""
    if resumed_at <= 0 or not counts or (len(counts) == 1 and min(counts) > 0):
        return None
    return (f"resumed after step {resumed_at}, but Adam's per-parameter step counts are {sorted(counts)} where one "
            "count above 0 was saved: the optimizer state did not load as it was saved, and the run would restart "
            "Adam's bias correction (compat/optimizer_resume.py adapts this load for Megatron-Core 0.19.2; a changed "
            "Megatron-Core needs that entry checked again). Resume with the versions the checkpoint was written "
            "with, or start over (--no_resume --overwrite, or a fresh checkpointing.save)")


class CheckResumedAdam(Callback):
    """Before a resumed run's first step: torch Adam's step counts came back from the checkpoint (Megatron-Core
    0.19.2 reset them to 0 on the torch-Adam path, silently: compat/optimizer_resume.py)."""

    def on_train_start(self, context: CallbackContext) -> None:
        from .compat.fused_adam import inner_optimizers

        problem = resumed_adam_problem(context.state.train_state.step,
                                       adam_step_counts(inner_optimizers(context.optimizer)))
        if problem:
            raise RuntimeError(problem)


class ProfileSteps(Callback):
    """Both hooks run before Megatron-Bridge advances train_state.step: the step in flight is step + 1."""

    def __init__(self, profiler: StepProfiler):
        self.profiler = profiler

    def on_train_step_start(self, context: CallbackContext) -> None:
        self.profiler.step_started(context.state.train_state.step + 1)

    def on_train_step_end(self, context: CallbackContext) -> None:
        self.profiler.step_finished(context.state.train_state.step + 1)

    def on_train_end(self, context: CallbackContext) -> None:
        self.profiler.close()


class CheckpointMarkers(Callback):
    """Writes our marker and pointer after Megatron-Bridge has saved an iteration (rank 0)."""

    def __init__(self, save: Path | None, marker: Marker, run_config_yaml: str):
        self.save = save
        self.marker = marker
        self.run_config_yaml = run_config_yaml
        self.saved_steps: list[int] = []

    def on_checkpoint_save(self, context: CallbackContext) -> None:
        step = context.state.train_state.step
        self.saved_steps.append(step)
        if self.save is None or not is_rank0():
            return
        folder = iteration_dir(self.save, step)
        atomic_write_text(folder / self.marker.config_file, self.run_config_yaml)
        write_marker(folder, self.marker.model_copy(update={"step": step}))
        atomic_write_text(self.save / LATEST_FILE, f"{step}\n")
