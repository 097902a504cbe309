"""`checkpointing:` — where and how often the run saves, and what it keeps."""

from pydantic import Field

from .base import Section


class CheckpointConfig(Section):
    save: str | None = None
    """Checkpoint folder; a run that finds a checkpoint here resumes from it."""
    save_interval: int = Field(default=500, ge=1)
    """Save every this many steps (and always at the end)."""
    save_lora_only: bool = False
    """With LoRA: save adapter weights only."""
    keep_last: int | None = Field(default=None, ge=1)
    """Keep only the newest N checkpoints (older ones pruned after a save completes)."""
    async_save: bool = False
    """Write checkpoints in the background (megatron engine)."""
    resume: bool = True
    """Resume from the newest checkpoint in `save` when there is one (flag --no_resume turns it off)."""
    overwrite: bool = False
    """Allow writing into a non-empty folder this run did not create (flag --overwrite)."""
    no_output_ok: bool = False
    """Allow a run that keeps nothing: no `save` folder and no HF export (flag --no_output_ok)."""
