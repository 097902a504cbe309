"""A NaN or Inf loss / gradient norm stops the run before the step is saved (engine-independent part).

Once the loss is NaN every later step, checkpoint and export is NaN too, so training on would only
replace good checkpoints with useless ones. `training.skip_nonfinite_steps: N` lets up to N such steps
pass (counted over the whole run, resumes included): their update is not applied, their data is
consumed and the LR schedule moves on. The step after the budget is spent stops the run.
"""

import math

from ..checkpoint import latest_iteration
from .exit_codes import NONFINITE_EXIT_CODE, PermanentFailure


class NonFiniteError(PermanentFailure):
    """Training stopped on a non-finite loss or gradient norm; the message says where and what is left."""

    exit_code = NONFINITE_EXIT_CODE

    def __init__(self, step: int, what: str, save: str | None = None, skipped: list[int] | None = None):
        self.step, self.what, self.skipped = step, what, list(skipped or [])
        self.last_checkpoint = latest_iteration(save) if save else None
        super().__init__(self._message(save))

    def _message(self, save: str | None) -> str:
        head = f"training diverged at step {self.step}: {self.what}; stopped before saving this step"
        if self.skipped:
            head += f" (steps already skipped: {', '.join(map(str, self.skipped))})"
        if self.last_checkpoint is not None:
            kept = f"the last good checkpoint is step {self.last_checkpoint} in {save}"
        else:
            kept = "no checkpoint was saved before it" if save else "no checkpoint folder was set"
        return (f"{head}; {kept}. Lower training.lr, keep gradient clipping on (training.clip_grad), check "
                "the data and the starting weights; training.skip_nonfinite_steps: N lets N bad steps pass")


def skip_setting_problem(skip_nonfinite_steps: int, engine: str) -> str | None:
    """The megatron engine has no skip: Megatron-Core's checks raise at the first NaN / Inf."""
    if engine == "megatron" and skip_nonfinite_steps:
        return ("training.skip_nonfinite_steps: the megatron engine stops at the first NaN / Inf loss or gradient "
                "(Megatron-Core's checks); set it to 0, or use engine: hf to skip bad steps")
    return None


def describe_nonfinite(loss: float, grad_norm: float | None) -> str | None:
    """'loss nan, gradient norm nan'-style text when either is not finite, else None."""
    bad = []
    if not math.isfinite(loss):
        bad.append(f"loss {loss}")
    if grad_norm is not None and not math.isfinite(grad_norm):
        bad.append(f"gradient norm {grad_norm}")
    return ", ".join(bad) or None


class NonFiniteGuard:
    """Counts non-finite steps against `allowed` skips; raises NonFiniteError once they are spent."""

    def __init__(self, allowed: int, save: str | None = None, skipped: list[int] | None = None):
        self.allowed, self.save = allowed, save
        self.skipped: list[int] = list(skipped or [])

    def check(self, step: int, loss: float, grad_norm: float | None) -> str | None:
        """None for a finite step; for a skipped one the reason (the caller logs it); raises past the budget."""
        what = describe_nonfinite(loss, grad_norm)
        if what is None:
            return None
        if len(self.skipped) >= self.allowed:
            raise NonFiniteError(step, what, self.save, self.skipped)
        self.skipped.append(step)
        return (f"step {step}: {what}; update skipped ({len(self.skipped)} of {self.allowed} allowed by "
                "training.skip_nonfinite_steps)")


def first_nonfinite_parameter(model, only: str | None = None) -> str | None:
    """Name of the first parameter (whose name contains `only`, when given) holding a NaN or Inf: what both engines
    check a loaded model with before training."""
    import torch

    with torch.no_grad():
        for name, param in model.named_parameters():
            if (only is None or only in name) and not all_finite(param):
                return name
    return None


def all_finite(tensor, rows_per_chunk: int = 4096) -> bool:
    """Whether `tensor` holds no NaN or Inf. One-byte floats (the FP8 frozen base's e4m3 weights) have no isfinite
    kernel: they are widened to float32 a block of rows at a time, so the check needs little extra memory."""
    import torch

    if not (tensor.is_floating_point() and tensor.element_size() == 1):
        return bool(torch.isfinite(tensor).all())
    rows = tensor.reshape(tensor.shape[0], -1) if tensor.dim() > 1 else tensor.reshape(-1, 1)
    return all(bool(torch.isfinite(block.float()).all()) for block in rows.split(rows_per_chunk))
