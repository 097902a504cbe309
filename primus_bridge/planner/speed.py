"""Step time and tokens/s/GPU from FLOPs, at an assumed utilisation of the GPU's dense bf16 peak.

Model FLOPs per token are the benchmarks' formula (`primus_bridge.models.flops`: Megatron-Bridge's
6 x weights + attention, with LoRA's 4 x frozen weights). The time estimate adds what the GPU runs
on top: full recompute repeats the forward (2 of those 6), selective recompute the attention core
forward (1/3 of its term). The assumed MFU applies to that total, and the 1F1B pipeline bubble adds
(PP - 1) / (VPP x micro batches) of the ideal time.
"""

from dataclasses import dataclass

from ..hardware import GpuType
from ..models import flops
from ..models.shape import ModelShape
from .layout import Layout

DEFAULT_MFU = 0.40


@dataclass(frozen=True)
class SpeedEstimate:
    mfu_assumed: float
    peak_tflops: float
    model_flops_per_token: float
    """Training FLOPs per token without recompute (what MFU counts)."""
    step_time_s: float
    tokens_per_s_per_gpu: float
    pipeline_bubble: float


def model_flops_per_token(shape: ModelShape, layout: Layout) -> float:
    return flops.flops_per_token(shape, layout.seq_length, layout.lora)


def recompute_flops_per_token(shape: ModelShape, layout: Layout) -> float:
    """FLOPs the recompute setting adds per token (forward passes run a second time)."""
    attention = flops.attention_flops_per_token(shape, layout.seq_length)
    if layout.recompute == "full":
        weights = flops.linear_params(shape) + flops.lm_head_params(shape)
        return 2 * weights + attention / 3
    return attention / 3 if layout.recompute == "selective" else 0.0


def estimate_speed(shape: ModelShape, layout: Layout, gpu: GpuType, mfu: float = DEFAULT_MFU) -> SpeedEstimate:
    model = model_flops_per_token(shape, layout)
    executed = model + recompute_flops_per_token(shape, layout)
    tokens_per_step = layout.global_batch * layout.seq_length
    bubble = (layout.pp - 1) / ((layout.vpp or 1) * layout.micro_batches_per_step)
    ideal = executed * tokens_per_step / (layout.world_size * gpu.bf16_tflops * 1e12 * mfu)
    step_time = ideal * (1 + bubble)
    return SpeedEstimate(mfu_assumed=mfu, peak_tflops=gpu.bf16_tflops, model_flops_per_token=model,
                         step_time_s=step_time, tokens_per_s_per_gpu=tokens_per_step / step_time / layout.world_size,
                         pipeline_bubble=bubble)
