"""`lora:` — low-rank adapters."""

from pydantic import Field, field_validator

from ...models.lora import target_errors
from .base import Section

DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


class LoraConfig(Section):
    use_lora: bool = False
    """Train LoRA adapters instead of all weights (flag --use_lora)."""
    lora_rank: int = Field(default=16, ge=1)
    """Adapter rank r (flag --lora_rank)."""
    lora_alpha: float = Field(default=32, gt=0)
    """Adapter scale numerator: updates are scaled by alpha / r (flag --lora_alpha)."""
    lora_dropout: float = Field(default=0.05, ge=0, lt=1)
    """Dropout on the adapter input."""
    lora_target_modules: list[str] = Field(default_factory=lambda: list(DEFAULT_TARGETS))
    """HF projection names to adapt: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj."""

    @field_validator("lora_target_modules")
    @classmethod
    def _known_projections(cls, names: list[str]) -> list[str]:
        errors = target_errors(names)
        if errors:
            raise ValueError("; ".join(errors))
        return names
