"""The profiling window: only the chosen steps are recorded, and an early stop still writes the profile."""

import gzip
import json

import pytest
import torch

from primus_bridge.config import ConfigError
from primus_bridge.config.layers import Layer
from primus_bridge.config.resolve import resolve
from primus_bridge.config.sections.profiling import ProfilingConfig
from primus_bridge.run.profiler import StepProfiler, profile_dir


def _steps(profiler: StepProfiler, count: int) -> None:
    for step in range(1, count + 1):
        profiler.step_started(step)
        with torch.profiler.record_function(f"step-{step}"):
            torch.mm(torch.randn(32, 32), torch.randn(32, 32))
        profiler.step_finished(step)


def _recorded_steps(folder) -> set[str]:
    trace = json.loads(gzip.decompress((folder / "rank-0.json.gz").read_bytes()))
    return {e["name"] for e in trace["traceEvents"] if str(e.get("name", "")).startswith("step-")}


def test_only_steps_start_to_end_are_recorded(tmp_path):
    profiler = StepProfiler(ProfilingConfig(enabled=True, start_step=2, end_step=3), tmp_path, rank=0)
    _steps(profiler, 5)
    assert _recorded_steps(tmp_path) == {"step-2", "step-3"}
    assert "aten::mm" in (tmp_path / "ops-rank0.txt").read_text()


def test_trace_false_writes_the_table_only(tmp_path):
    profiler = StepProfiler(ProfilingConfig(enabled=True, start_step=1, end_step=1, trace=False), tmp_path, rank=0)
    _steps(profiler, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ops-rank0.txt"] and profiler.written == [
        tmp_path / "ops-rank0.txt"]


def test_disabled_records_nothing(tmp_path):
    _steps(StepProfiler(ProfilingConfig(enabled=False), tmp_path, rank=0), 4)
    assert not list(tmp_path.iterdir())


def test_a_run_that_stops_inside_the_window_still_writes_it(tmp_path):
    profiler = StepProfiler(ProfilingConfig(enabled=True, start_step=2, end_step=9), tmp_path, rank=0)
    _steps(profiler, 3)
    profiler.close()
    assert _recorded_steps(tmp_path) == {"step-2", "step-3"}


def test_default_folder_is_under_the_checkpoints():
    assert str(profile_dir(ProfilingConfig(), "/runs/a")) == "/runs/a/profile"
    assert str(profile_dir(ProfilingConfig(dir="/p"), "/runs/a")) == "/p"


@pytest.mark.parametrize(("profiling", "message"), [
    ({"enabled": True, "start_step": 5, "end_step": 4}, r"profiling.end_step \(4\) is before"),
    ({"enabled": True, "start_step": 5, "end_step": 50}, r"profiling.end_step \(50\) is after the last step"),
])
def test_bad_windows_name_the_key(profiling, message):
    with pytest.raises(ConfigError, match=message):
        resolve([Layer("test", {"training": {"train_iters": 10}, "profiling": profiling})])
