"""`training:` — schedule, batch sizes and optimizer."""

from typing import Literal

from pydantic import Field

from .base import Section


class TrainingConfig(Section):
    micro_batch_size: int = Field(default=1, ge=1)
    """Sequences per GPU per forward pass (flag --micro_batch_size)."""
    global_batch_size: int = Field(default=128, ge=1)
    """Sequences per optimizer step, across all data-parallel ranks (gradient accumulation fills the gap)."""
    train_iters: int = Field(default=1000, ge=1)
    """Optimizer steps to run (flag --train_iters)."""
    lr: float = Field(default=5.0e-6, gt=0)
    """Peak learning rate (flag --lr)."""
    min_lr: float = Field(default=0.0, ge=0)
    """Learning rate at the end of the cosine decay."""
    lr_warmup_iters: int = Field(default=0, ge=0)
    """Linear warm-up steps before the cosine decay (flag --lr_warmup_iters)."""
    lr_decay_style: Literal["cosine", "linear", "constant"] = "cosine"
    """Decay after warm-up: cosine, linear or constant."""
    weight_decay: float = Field(default=0.0, ge=0)
    """AdamW weight decay."""
    adam_beta1: float = Field(default=0.9, gt=0, lt=1)
    """AdamW beta1."""
    adam_beta2: float = Field(default=0.95, gt=0, lt=1)
    """AdamW beta2."""
    adam_eps: float = Field(default=1.0e-8, gt=0)
    """AdamW epsilon."""
    clip_grad: float = Field(default=1.0, ge=0)
    """Gradient-norm clipping threshold; 0 turns clipping off (flag --clip_grad)."""
    skip_nonfinite_steps: int = Field(default=0, ge=0)
    """Steps with a NaN / Inf loss or gradient norm that may be skipped (no update) before the run stops (hf engine)."""
    eval_interval: int = Field(default=100, ge=1)
    """Run validation every this many steps."""
    eval_iters: int = Field(default=10, ge=0)
    """Validation batches per evaluation; 0 turns validation off."""
    log_interval: int = Field(default=1, ge=1)
    """Print a log line every this many steps."""
    seed: int = 1234
    """Seed for weights that are initialised here (LoRA), dropout and data order."""
    tensorboard_dir: str | None = None
    """Write TensorBoard events here."""
