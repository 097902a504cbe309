"""`precision:` — mixed precision."""

from pydantic import model_validator

from .base import Section


class PrecisionConfig(Section):
    bf16: bool = True
    """bfloat16 mixed precision (fp32 master weights); off on CPU in the HF engine."""
    fp16: bool = False
    """float16 mixed precision with loss scaling."""
    fp8: str | None = None
    """FP8 recipe (e.g. hybrid) for the megatron engine; needs TransformerEngine."""

    @model_validator(mode="after")
    def _one_half_precision(self):
        if self.bf16 and self.fp16:
            raise ValueError("precision.bf16 and precision.fp16 are both true: choose one")
        return self
