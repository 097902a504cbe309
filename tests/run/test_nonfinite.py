"""The non-finite guard: a NaN / Inf step stops the run (or is skipped within the budget) and never updates."""

import math

import pytest
import torch

from primus_bridge.checkpoint.store import write_checkpoint
from primus_bridge.engine.hf.nonfinite import FiniteUpdates
from primus_bridge.run.nonfinite import first_nonfinite_parameter
from primus_bridge.run.exit_codes import NONFINITE_EXIT_CODE, PREEMPTED_EXIT_CODE
from primus_bridge.run.nonfinite import NonFiniteError, NonFiniteGuard, skip_setting_problem


def test_a_finite_step_passes_and_the_first_bad_one_stops_without_a_budget(tmp_path):
    write_checkpoint(tmp_path, 6, lambda folder: (folder / "w").write_text("w"))
    guard = NonFiniteGuard(allowed=0, save=str(tmp_path))
    assert guard.check(7, 2.5, 1.0) is None
    with pytest.raises(NonFiniteError) as stop:
        guard.check(8, math.nan, math.nan)
    assert stop.value.exit_code == NONFINITE_EXIT_CODE != PREEMPTED_EXIT_CODE
    assert stop.value.step == 8 and stop.value.last_checkpoint == 6
    assert "training diverged at step 8: loss nan, gradient norm nan" in str(stop.value)
    assert f"the last good checkpoint is step 6 in {tmp_path}" in str(stop.value)


def test_the_skip_budget_counts_over_resumes():
    guard = NonFiniteGuard(allowed=2, skipped=[3])
    assert "update skipped (2 of 2 allowed" in guard.check(5, 1.0, math.inf)
    with pytest.raises(NonFiniteError, match=r"step 9: gradient norm inf.*already skipped: 3, 5"):
        guard.check(9, 1.0, math.inf)


def test_finite_updates_skip_a_nonfinite_gradient_and_apply_a_finite_one():
    layer = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=0.1)
    guarded = FiniteUpdates(optimizer)
    before = [p.detach().clone() for p in layer.parameters()]
    layer(torch.tensor([[1.0, math.nan, 0.0]])).sum().backward()
    guarded.step()
    assert guarded.skipped and all(torch.equal(a, b) for a, b in zip(before, layer.parameters()))
    assert not optimizer.state, "a skipped step leaves the Adam moments untouched"
    guarded.zero_grad(set_to_none=True)
    layer(torch.ones(1, 3)).sum().backward()
    guarded.step()
    assert not guarded.skipped and not torch.equal(before[0], layer.weight)
    assert guarded.param_groups is optimizer.param_groups


def test_first_nonfinite_parameter_names_it():
    layer = torch.nn.Linear(3, 2)
    assert first_nonfinite_parameter(layer) is None
    with torch.no_grad():
        layer.bias[1] = math.inf
    assert first_nonfinite_parameter(layer) == "bias"


@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float8_e5m2])
def test_fp8_weights_are_checked_widened(dtype):
    """The FP8 frozen base's e4m3 weights have no isfinite kernel; they are widened a block of rows at a time."""
    model = torch.nn.Linear(16, 10_000, bias=False)
    model.weight.data = torch.randn(10_000, 16).to(dtype)
    assert first_nonfinite_parameter(model) is None
    model.weight.data[9_000, 3] = float("nan")  # in the third block of 4096 rows
    assert first_nonfinite_parameter(model) == "weight"


def test_only_the_hf_engine_has_a_skip_budget():
    assert "the megatron engine stops at the first NaN / Inf" in skip_setting_problem(2, "megatron")
    assert skip_setting_problem(0, "megatron") is None and skip_setting_problem(2, "hf") is None
