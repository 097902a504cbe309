"""Resuming a distributed-optimizer checkpoint with torch's Adam (no Apex, no TransformerEngine).

Why this module exists: to load a checkpoint, Megatron-Core 0.19.2 builds the optimizer's sharded
state dict from `DistributedOptimizer.state_dict()` before any step has run. Without Apex or TE that
method reads the 'step' counter from the inner torch Adam's per-parameter state, which stays empty
until the first step, and stops at `assert len(steps) == 1`: a run saved with the distributed
optimizer could not resume. Before the first step the counter is 0 (where torch.optim.Adam starts);
the checkpoint being loaded then sets the real value (`DistributedOptimizer.load_state_dict` copies
each param group's 'step' into the per-parameter state).

Registry entry `optimizer_resume`: `resume_before_first_step()` wraps that one method, only on the
torch-Adam path (`HAVE_APEX_OR_TE` False; the registry reports the entry not applicable otherwise); with
Apex or TE, Megatron-Core's own code runs unchanged.
"""

import torch
from megatron.core.optimizer import distrib_optimizer

from .marker import replace_once

ENTRY = "optimizer_resume"


def unstepped_state_dict(inner: torch.optim.Optimizer, grad_scaler) -> dict:
    """What DistributedOptimizer.state_dict() returns on the torch-Adam path, for an optimizer not yet stepped."""
    groups = [{key: value for key, value in group.items() if key != "params"} | {"step": 0.0}
              for group in inner.state_dict()["param_groups"]]
    state = {"optimizer": {"param_groups": groups}}
    if grad_scaler:
        state["grad_scaler"] = grad_scaler.state_dict()
    return state


def not_applicable() -> str | None:
    """Why the entry does not apply here, or None."""
    if distrib_optimizer.HAVE_APEX_OR_TE:
        return "Apex or TransformerEngine installed: Megatron-Core's own optimizer state path runs"
    return None


def resume_before_first_step() -> None:
    """Let DistributedOptimizer.state_dict() answer before the first step (idempotent)."""
    if not_applicable():
        return

    def make(original):
        def state_dict(self):
            if self.optimizer.state:
                return original(self)
            return unstepped_state_dict(self.optimizer, self.grad_scaler)

        state_dict.__doc__ = original.__doc__
        return state_dict

    replace_once(ENTRY, distrib_optimizer.DistributedOptimizer, "state_dict", make)
