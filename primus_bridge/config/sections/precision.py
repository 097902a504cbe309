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
    fp8_frozen_base: bool = False
    """LoRA on the megatron engine without TransformerEngine: the frozen base linears (q/k/v, o, gate/up, down of
    every layer) held in FP8 e4m3 with per-channel scales and multiplied on the FP8 tensor cores; half the base
    weights' memory. Needs bf16, tensor parallel 1 and a GPU with FP8 (compute capability 8.9+, AMD MI300/MI350)."""

    @model_validator(mode="after")
    def _one_half_precision(self):
        if self.bf16 and self.fp16:
            raise ValueError("precision.bf16 and precision.fp16 are both true: choose one")
        return self

    @model_validator(mode="after")
    def _fp8_frozen_base_alone(self):
        if self.fp8_frozen_base and self.fp8:
            raise ValueError(f"precision.fp8_frozen_base and precision.fp8 ({self.fp8!r}) are both set: choose one "
                             "(fp8 is TransformerEngine's recipe, fp8_frozen_base the path without it)")
        if self.fp8_frozen_base and not self.bf16:
            raise ValueError("precision.fp8_frozen_base: needs precision.bf16: true (its matmuls write bf16)")
        return self
