"""A NaN / Inf gradient norm stops the step before the optimizer's update, through Megatron-Core's own check.

Why this module exists: Megatron-Core's non-finite checks (the rerun state machine's check of each micro batch's
loss, DDP's check of the reduced gradients) read a device value on the host inside the forward-backward pass:
a stall per micro batch that keeps the host from running ahead of the GPU, and a read that a forward-backward
recorded as one CUDA graph (`model.cuda_graph`, engine/megatron/cuda_graph.py) cannot make. They are off for
every run (container.py). The gradient norm is read on the host anyway, by the
optimizer's step before its update (`ChainedOptimizer.step` calls `get_grad_norm`, then clips and updates):
`use_grad_norm_check()` wraps `ChainedOptimizer.get_grad_norm` so that a NaN or Inf norm goes through
`validate_result` of the rerun state machine, as Megatron-Core's own checks do. With reruns disabled (the
product's setting, container.py) that raises at once, before the update and before any save, with the message
engine.py turns into the non-finite exit code. A non-finite loss makes the gradients, and so their norm,
non-finite too.

Registry entry `nonfinite_grad_norm`; Megatron-Core 0.19.2 builds a ChainedOptimizer for every run (one inner
optimizer or several), whose `step` reads the norm before any update.
"""

import math

from megatron.core.optimizer.optimizer import ChainedOptimizer
from megatron.core.rerun_state_machine import get_rerun_state_machine

from .marker import replace_once

ENTRY = "nonfinite_grad_norm"


def check_grad_norm(grad_norm) -> None:
    """Megatron-Core's fatal validation of the step's gradient norm (a float, or None when none was computed)."""
    if grad_norm is None:
        return
    machine = get_rerun_state_machine()
    machine.validate_result(result=grad_norm, rejection_func=math.isnan, message="found NaN in grad norm",
                            tolerance=0.0, fatal=True)
    machine.validate_result(result=grad_norm, rejection_func=math.isinf, message="found Inf in grad norm",
                            tolerance=0.0, fatal=True)


def use_grad_norm_check() -> None:
    """Validate every gradient norm ChainedOptimizer computes (idempotent)."""

    def make(original):
        def get_grad_norm_checked(self):
            grad_norm = original(self)
            check_grad_norm(grad_norm)
            return grad_norm

        get_grad_norm_checked.__doc__ = original.__doc__
        return get_grad_norm_checked

    replace_once(ENTRY, ChainedOptimizer, "get_grad_norm", make)
