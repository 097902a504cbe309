"""Published numbers the reports quote beside ours, for context (measured elsewhere, not by this harness)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Anchor:
    what: str
    hardware: str
    number: str
    source: str


ANCHORS = (
    Anchor("Llama3-8B SFT, bf16, seq 4096", "8x H100", "12,412 tokens/s/GPU (56.4% MFU)",
           "NVIDIA fine-tuning performance table"),
    Anchor("Llama3-8B LoRA, bf16, seq 4096", "8x H100", "17,809 tokens/s/GPU", "NVIDIA fine-tuning performance table"),
    Anchor("Llama3-70B LoRA, FP8", "8x H100", "2,643 tokens/s/GPU, 735 TFLOP/s/GPU", "Megatron-Bridge performance"),
    Anchor("Llama 3.1 8B LoRA", "1 GPU", "2x HF + FlashAttention-2", "Unsloth's claim"),
    Anchor("dense bf16 matmul", "1x H200", "769-798 TFLOP/s measured", "8192^3 on random data, this workplace"),
)
