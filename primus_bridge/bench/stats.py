"""Step-time statistics over the timed steps (the warm-up steps dropped)."""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StepStats:
    timed_steps: int
    mean_s: float
    p50_s: float
    p90_s: float
    min_s: float
    max_s: float


def timed_part(step_times: list[float], warmup_steps: int) -> list[float]:
    """The step times after the first `warmup_steps`; an error when none are left."""
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    timed = list(step_times[warmup_steps:])
    if not timed:
        raise ValueError(f"no timed steps: {len(step_times)} step(s) recorded, {warmup_steps} of them warm-up")
    return timed


def step_stats(step_times: list[float], warmup_steps: int) -> StepStats:
    timed = np.asarray(timed_part(step_times, warmup_steps), dtype=np.float64)
    p50, p90 = np.percentile(timed, [50, 90])
    return StepStats(len(timed), float(timed.mean()), float(p50), float(p90), float(timed.min()), float(timed.max()))
