"""The hf engine's side of the non-finite guard (run/nonfinite.py): a skipped step must not touch the weights.

With `training.skip_nonfinite_steps > 0` the training step is given `FiniteUpdates(optimizer)`, which
applies an update only when every gradient is finite; the loop then counts the step against the budget.
Without skips the plain optimizer is used: a non-finite step stops the run before anything is saved,
so the update it applied is never kept.
"""

import torch


class FiniteUpdates:
    """The optimizer as the training step sees it; `step()` is skipped when a gradient holds NaN or Inf.

    Gradients are identical on every rank after DDP's all-reduce, so every rank decides the same way.
    """

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer = optimizer
        self.skipped = False

    def __getattr__(self, name: str):
        return getattr(self.optimizer, name)

    def step(self) -> None:
        grads = [p.grad for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
        self.skipped = bool(grads) and not bool(torch.isfinite(torch.nn.utils.get_total_norm(grads)))
        if not self.skipped:
            self.optimizer.step()
