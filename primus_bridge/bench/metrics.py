"""From a run's raw step times and losses to the reported numbers."""

import math
from dataclasses import dataclass

from .results import CaseInfo, RunMetrics, SystemRun
from .stats import step_stats


def compute_metrics(run: SystemRun, case: CaseInfo, warmup_steps: int, measured_peak_tflops: float | None,
                    datasheet_peak_tflops: float | None) -> RunMetrics:
    """Throughput from the mean timed step (total tokens over total time), MFU against both peaks."""
    if run.tokens_per_step is not None and run.tokens_per_step != case.tokens_per_step:
        raise ValueError(f"{run.system} on {case.name} ran {run.tokens_per_step} tokens per step; the case defines "
                         f"{case.tokens_per_step} (global batch {case.global_batch_size} x seq {case.seq_length})")
    stats = step_stats(run.step_times, warmup_steps)
    tokens_per_s_per_gpu = case.tokens_per_step / stats.mean_s / max(run.gpus, 1)
    tflops = case.flops_per_token * tokens_per_s_per_gpu / 1e12
    return RunMetrics(
        warmup_steps=warmup_steps,
        timed_steps=stats.timed_steps,
        step_time_mean_s=stats.mean_s,
        step_time_p50_s=stats.p50_s,
        step_time_p90_s=stats.p90_s,
        tokens_per_s_per_gpu=tokens_per_s_per_gpu,
        model_tflops_per_gpu=tflops,
        mfu_measured=tflops / measured_peak_tflops if measured_peak_tflops else None,
        mfu_datasheet=tflops / datasheet_peak_tflops if datasheet_peak_tflops else None,
        loss_first=run.losses[0] if run.losses else None,
        loss_last=run.losses[-1] if run.losses else None,
    )


@dataclass(frozen=True)
class LossCurveGap:
    """How far one run's loss curve lies from a reference run's over the same steps (same weights, same batches)."""

    steps: int
    window_steps: int
    max_window_gap: float
    """max over windows of |mean loss - reference's mean loss| / |reference's mean loss|."""
    worst_window_first_step: int
    max_step_gap: float
    """max over steps of |loss - reference's loss| / |reference's loss|."""
    worst_step: int

    def describe(self) -> str:
        return (f"{self.steps} steps, {math.ceil(self.steps / self.window_steps)} windows; largest window gap "
                f"{self.max_window_gap:.3%} (the window from step {self.worst_window_first_step}); largest per-step "
                f"gap {self.max_step_gap:.3%} (step {self.worst_step})")


def _relative_gaps(values: list[float], reference: list[float]) -> list[float]:
    """|value - reference| / |reference|; infinite where either is not finite or the reference is 0."""
    return [abs(a - b) / abs(b) if math.isfinite(a) and math.isfinite(b) and b else math.inf
            for a, b in zip(values, reference)]


def loss_curve_gap(losses: list[float], reference: list[float], first_step: int, window_steps: int) -> LossCurveGap:
    """Compare the per-step losses of two runs from step `first_step` (1-based; earlier steps are warm-up) on,
    in consecutive windows of `window_steps` steps (the last window may be shorter). Steps count from 1."""
    if len(losses) != len(reference):
        raise ValueError(f"the runs recorded {len(losses)} and {len(reference)} losses: not the same steps")
    if window_steps < 1:
        raise ValueError(f"window_steps must be >= 1, got {window_steps}")
    part, base = losses[first_step - 1:], reference[first_step - 1:]
    if not part:
        raise ValueError(f"no losses from step {first_step} on ({len(losses)} recorded)")
    windows = range(0, len(part), window_steps)
    window_gaps = _relative_gaps([sum(part[i:i + window_steps]) / len(part[i:i + window_steps]) for i in windows],
                                 [sum(base[i:i + window_steps]) / len(base[i:i + window_steps]) for i in windows])
    step_gaps = _relative_gaps(part, base)
    worst_window = max(range(len(window_gaps)), key=window_gaps.__getitem__)
    worst_step = max(range(len(step_gaps)), key=step_gaps.__getitem__)
    return LossCurveGap(steps=len(part), window_steps=window_steps, max_window_gap=window_gaps[worst_window],
                        worst_window_first_step=first_step + worst_window * window_steps,
                        max_step_gap=step_gaps[worst_step], worst_step=first_step + worst_step)
