"""A torch.profiler window over a few training steps, the same for both engines.

The engine calls `step_started(n)` before optimizer step n (counted from 1) and `step_finished(n)` after
it. Steps `start_step`..`end_step` of `profiling:` are recorded; at the end this rank writes
`rank-<R>.json.gz` (open it in Perfetto or chrome://tracing; unless `trace: false`), `ops-rank<R>.txt`,
PyTorch's own table of operations and kernels by self device time (self CPU time without a GPU), and on
a GPU `gaps-rank<R>.txt`: how busy the device was and its longest idle gaps (device_gaps.py), with its
headline numbers in `gaps-rank<R>.json`.
"""

import json
import logging
import os
from pathlib import Path

import torch
import torch.distributed as dist

from ..config import PrimusConfig
from ..config.sections.profiling import ProfilingConfig
from ..utils.atomic import atomic_write_text
from .device_gaps import Interval, device_timeline, render, summary

log = logging.getLogger(__name__)


def profile_dir(config: ProfilingConfig, save_dir: str | None) -> Path:
    if config.dir:
        return Path(config.dir)
    return Path(save_dir) / "profile" if save_dir else Path("profile")


def operation_table_path(out_dir: Path, rank: int) -> Path:
    return Path(out_dir) / f"ops-rank{rank}.txt"


def gaps_table_path(out_dir: Path, rank: int) -> Path:
    return Path(out_dir) / f"gaps-rank{rank}.txt"


def gaps_summary_path(out_dir: Path, rank: int) -> Path:
    """The gaps table's headline numbers as JSON (device_gaps.summary)."""
    return Path(out_dir) / f"gaps-rank{rank}.json"


def _activities() -> list[torch.profiler.ProfilerActivity]:
    activities = [torch.profiler.ProfilerActivity.CPU]
    if torch.cuda.is_available():  # ROCm builds report HIP devices here too
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    return activities


def _process_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


class StepProfiler:
    def __init__(self, config: ProfilingConfig, out_dir: Path, rank: int | None = None):
        """rank None: the process group's rank when the profile is written (it may not exist yet)."""
        self.config, self.out_dir, self._rank = config, out_dir, rank
        self._profile: torch.profiler.profile | None = None
        self.written: list[Path] = []

    def step_started(self, step: int) -> None:
        if self.config.enabled and step == self.config.start_step and self._profile is None:
            self._profile = torch.profiler.profile(activities=_activities(), record_shapes=self.config.record_shapes)
            self._profile.__enter__()

    def step_finished(self, step: int) -> None:
        if self._profile is not None and step >= self.config.end_step:
            self.close()

    @classmethod
    def for_run(cls, cfg: PrimusConfig, rank: int | None = None) -> "StepProfiler":
        """The run's profiler, writing to `profiling.dir` (default <checkpointing.save>/profile)."""
        return cls(cfg.profiling, profile_dir(cfg.profiling, cfg.checkpointing.save), rank)

    @property
    def rank(self) -> int:
        return self._rank if self._rank is not None else _process_rank()

    def close(self) -> None:
        """Stop and write what was recorded (also when training stops early)."""
        if self._profile is None:
            return
        profile, self._profile = self._profile, None
        profile.__exit__(None, None, None)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.written = [self._write_table(profile)]
        if torch.profiler.ProfilerActivity.CUDA in _activities():
            self.written.append(self._write_gaps(profile))
        if self.config.trace:
            self.written.append(self._write_trace(profile))
        log.info("profile of steps %d-%d: %s", self.config.start_step, self.config.end_step,
                 ", ".join(str(p) for p in self.written))

    def _write_trace(self, profile: torch.profiler.profile) -> Path:
        final = self.out_dir / f"rank-{self.rank}.json.gz"
        partial = self.out_dir / f".rank-{self.rank}.partial.json.gz"  # the .gz suffix makes torch compress
        profile.export_chrome_trace(str(partial))
        os.replace(partial, final)
        return final

    def _write_table(self, profile: torch.profiler.profile) -> Path:
        on_device = torch.profiler.ProfilerActivity.CUDA in _activities()
        sort_by = "self_device_time_total" if on_device else "self_cpu_time_total"
        averages = profile.key_averages(group_by_input_shape=self.config.record_shapes)
        table = averages.table(sort_by=sort_by, row_limit=self.config.top_ops)
        header = (f"steps {self.config.start_step}-{self.config.end_step}, rank {self.rank}, "
                  f"sorted by {sort_by}\n\n")
        path = operation_table_path(self.out_dir, self.rank)
        atomic_write_text(path, header + table + "\n")
        return path

    def _write_gaps(self, profile: torch.profiler.profile) -> Path:
        device, host = [], []
        for event in profile.profiler.kineto_results.events():
            interval = Interval(event.name(), event.start_ns(), event.start_ns() + event.duration_ns())
            (host if event.device_type() == torch.autograd.DeviceType.CPU else device).append(interval)
        timeline = device_timeline(device, host)
        header = f"steps {self.config.start_step}-{self.config.end_step}, rank {self.rank}\n"
        numbers = {"steps": [self.config.start_step, self.config.end_step], **summary(timeline)}
        atomic_write_text(gaps_summary_path(self.out_dir, self.rank), json.dumps(numbers, indent=1) + "\n")
        path = gaps_table_path(self.out_dir, self.rank)
        atomic_write_text(path, header + render(timeline))
        return path
