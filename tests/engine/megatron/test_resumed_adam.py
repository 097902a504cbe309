"""CheckResumedAdam: a resumed run whose Adam step counts did not come back from the checkpoint stops before its
first step (Megatron-Core 0.19.2 reset them to 0 on the torch-Adam path: compat/optimizer_resume.py)."""

import pytest
import torch

from primus_bridge.engine.megatron.runtime import prepare_megatron

prepare_megatron()
from megatron.bridge.training.callbacks import CallbackContext  # noqa: E402
from megatron.bridge.training.state import GlobalState  # noqa: E402

from primus_bridge.engine.megatron.callbacks import CheckResumedAdam, adam_step_counts  # noqa: E402


def _adam(steps: int) -> torch.optim.AdamW:
    params = [torch.nn.Parameter(torch.ones(3, 2)), torch.nn.Parameter(torch.ones(2))]
    adam = torch.optim.AdamW(params, lr=1e-3)
    for _ in range(steps):
        for param in params:
            param.grad = torch.randn_like(param)
        adam.step()
    return adam


def _context(adam: torch.optim.AdamW, resumed_at: int) -> CallbackContext:
    state = GlobalState()
    state.train_state.step = resumed_at
    return CallbackContext(state=state, model=[], optimizer=(adam, None))  # as built with skip_megatron_wrapping


def test_counts_as_loaded_pass_and_a_fresh_run_is_not_checked():
    assert adam_step_counts([_adam(4)]) == {4.0}
    CheckResumedAdam().on_train_start(_context(_adam(4), resumed_at=4))
    CheckResumedAdam().on_train_start(_context(_adam(0), resumed_at=0))
    CheckResumedAdam().on_train_start(_context(_adam(0), resumed_at=4))  # no optimizer state saved: nothing to check


@pytest.mark.parametrize("counts", [[0, 0], [4, 0]])
def test_counts_reset_or_split_stop_the_resumed_run(counts):
    adam = _adam(4)
    for state, count in zip(adam.state.values(), counts):
        state["step"] = torch.tensor(float(count))
    with pytest.raises(RuntimeError, match=r"resumed after step 4, but Adam's per-parameter step counts are "):
        CheckResumedAdam().on_train_start(_context(adam, resumed_at=4))
