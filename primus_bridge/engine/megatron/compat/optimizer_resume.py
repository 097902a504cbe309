"""Resuming a distributed-optimizer checkpoint with torch's Adam (no Apex, no TransformerEngine).

Why this module exists: two steps of Megatron-Core 0.19.2's load of the optimizer go wrong on its torch-Adam path.

- Building the sharded state dict. To load a checkpoint, Megatron-Core builds the optimizer's sharded state dict
  from `DistributedOptimizer.state_dict()` before any step has run. Without Apex or TE that method reads the
  'step' counter from the inner torch Adam's per-parameter state, which stays empty until the first step, and
  stops at `assert len(steps) == 1`: a run saved with the distributed optimizer could not resume. Before the
  first step the counter is 0 (where torch.optim.Adam starts); `state_dict` answers that (`unstepped_state_dict`),
  and the checkpoint being loaded then sets the real value (`DistributedOptimizer.load_state_dict` copies each
  param group's 'step' into the per-parameter state).
- Copying the parameter state back. torch's Adam keeps 'step' as a 0-dim tensor in each parameter's state, so
  the per-parameter tensors Megatron-Core saves (`_get_main_param_and_optimizer_states`) include it. The
  'dp_reshardable' format (Megatron-Bridge's default) stores it as a `LocalNonpersistentObject`: not in the
  checkpoint, the object of the optimizer being loaded instead, which still holds the placeholder 0 of the
  load's first step. `_set_main_param_and_optimizer_states` then copies every tensor it gets into the state,
  that 0 too, after the param groups had set the real count. A resumed run restarted Adam's count at 0: its
  first update used the bias correction of step 1 with the checkpoint's moments (about twice the size at step
  5 of a LoRA run), and every later one a count short by the checkpoint's steps. On an H100 (2026-12-06) a
  LoRA run resumed from step 4 repeated the uninterrupted run's step-5 loss and gradient norm, then differed by
  up to 3.5% (benchmarks/reports/megatron-engine/2026-12-06-h100-gpu-tests-session7). `keep_the_loaded_step`
  leaves 'step' out of what that method copies (`step_not_copied`); the count stays the param groups' (Megatron-Core's
  'fully_sharded_model_space' load leaves it out of what it passes too), in a tensor of each parameter's own
  (`own_step_counter`).

Registry entry `optimizer_resume`: `resume_before_first_step()` wraps the two methods, only on the torch-Adam path
(`HAVE_APEX_OR_TE` False; the registry reports the entry not applicable otherwise); with Apex or TE, whose Adam
keeps the count in the param groups only, Megatron-Core's own code runs unchanged.
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


STEP = "step"
"""torch Adam's per-parameter step counter (a 0-dim tensor in its state)."""


def step_not_copied(tensors: dict) -> dict:
    """A parameter's saved state as `_set_main_param_and_optimizer_states` gets it, with 'step' None: that method
    copies only tensors, so the count the param groups set stays (see the module doc)."""
    return {**tensors, STEP: None}


def own_step_counter(optimizer, model_param) -> None:
    """Give the parameter's Adam state a 'step' tensor of its own. `load_state_dict` puts one tensor in every
    parameter's state; torch moves it to each parameter's device for the fused kernel (a copy each), but the foreach
    path (a checkpoint written before the `fused_adam` entry) keeps the one tensor and adds 1 to it once per
    parameter and step."""
    group, order = optimizer.model_param_group_index_map[model_param]
    state = optimizer.optimizer.state[optimizer.optimizer.param_groups[group]["params"][order]]
    if isinstance(state.get(STEP), torch.Tensor):
        state[STEP] = state[STEP].clone()


def resume_before_first_step() -> None:
    """Let DistributedOptimizer.state_dict() answer before the first step, and keep the step count the checkpoint's
    param groups set when the parameter state is copied back (idempotent)."""
    if not_applicable():
        return
    keep_the_loaded_step()

    def make(original):
        def state_dict(self):
            if self.optimizer.state:
                return original(self)
            return unstepped_state_dict(self.optimizer, self.grad_scaler)

        state_dict.__doc__ = original.__doc__
        return state_dict

    replace_once(ENTRY, distrib_optimizer.DistributedOptimizer, "state_dict", make)


def keep_the_loaded_step() -> None:
    """`_set_main_param_and_optimizer_states` copies every state tensor but 'step' (idempotent)."""

    def make(original):
        def set_states(self, model_param, tensors):
            original(self, model_param, step_not_copied(tensors))
            own_step_counter(self, model_param)

        set_states.__doc__ = original.__doc__
        return set_states

    replace_once(ENTRY, distrib_optimizer.DistributedOptimizer, "_set_main_param_and_optimizer_states", make)
