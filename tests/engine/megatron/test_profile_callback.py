"""ProfileSteps maps Megatron-Bridge's step hooks (fired before train_state.step advances) onto the window."""

import gzip
import json

import torch

from primus_bridge.engine.megatron.runtime import prepare_megatron

prepare_megatron()
from megatron.bridge.training.callbacks import CallbackContext  # noqa: E402
from megatron.bridge.training.state import GlobalState  # noqa: E402

from primus_bridge.config.sections.profiling import ProfilingConfig  # noqa: E402
from primus_bridge.engine.megatron.callbacks import ProfileSteps  # noqa: E402
from primus_bridge.run.profiler import StepProfiler  # noqa: E402


def test_steps_two_and_three_are_recorded_as_megatron_bridge_counts_them(tmp_path):
    state = GlobalState()
    context = CallbackContext(state=state, model=[])
    callback = ProfileSteps(StepProfiler(ProfilingConfig(enabled=True, start_step=2, end_step=3), tmp_path))
    for _ in range(4):
        callback.on_train_step_start(context)
        with torch.profiler.record_function(f"step-{state.train_state.step + 1}"):
            torch.mm(torch.randn(8, 8), torch.randn(8, 8))
        callback.on_train_step_end(context)
        state.train_state.step += 1  # what Megatron-Bridge does after the hook
    callback.on_train_end(context)
    trace = json.loads(gzip.decompress((tmp_path / "rank-0.json.gz").read_bytes()))
    steps = {e["name"] for e in trace["traceEvents"] if str(e.get("name", "")).startswith("step-")}
    assert steps == {"step-2", "step-3"}
