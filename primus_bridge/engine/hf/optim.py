"""AdamW and the learning-rate schedule (linear warm-up, then cosine / linear / constant down to min_lr).

Weight decay skips biases and norm weights (1-D parameters), as Megatron does.
"""

import torch
from torch.optim.lr_scheduler import LambdaLR

from ...config import ConfigError, PrimusConfig


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: torch.nn.Module, cfg: PrimusConfig) -> torch.optim.AdamW:
    t = cfg.training
    return torch.optim.AdamW(param_groups(model, t.weight_decay), lr=t.lr, betas=(t.adam_beta1, t.adam_beta2),
                             eps=t.adam_eps)


def check_schedule(cfg: PrimusConfig) -> str:
    """The decay style (one of the config's), after checking the schedule keys."""
    t = cfg.training
    if t.min_lr > t.lr:
        raise ConfigError(f"training.min_lr: {t.min_lr} is above training.lr {t.lr}; use a smaller min_lr")
    return t.lr_decay_style


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: PrimusConfig) -> LambdaLR:
    """Warm-up reaches lr at step `lr_warmup_iters`; the decay ends at min_lr on the last step."""
    from transformers import optimization as schedules

    t = cfg.training
    style = check_schedule(cfg)
    if style == "cosine":
        return schedules.get_cosine_with_min_lr_schedule_with_warmup_lr_rate(
            optimizer, t.lr_warmup_iters, t.train_iters, min_lr=t.min_lr)
    if style == "linear" and t.min_lr < t.lr:
        return schedules.get_polynomial_decay_schedule_with_warmup(
            optimizer, t.lr_warmup_iters, t.train_iters, lr_end=t.min_lr, power=1.0)
    return schedules.get_constant_schedule_with_warmup(optimizer, t.lr_warmup_iters)
