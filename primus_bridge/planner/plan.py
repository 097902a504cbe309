"""A plan: the fullest stage's memory against the GPU, whether the layout can run, and the speed."""

import math
from dataclasses import dataclass, replace

from ..hardware import GIB, GpuType
from ..models.shape import ModelShape
from .layout import Layout
from .memory import MemoryBreakdown, fullest_stage, load_peak_bytes, stage_memory
from .speed import DEFAULT_MFU, SpeedEstimate, estimate_speed


@dataclass(frozen=True)
class Plan:
    model: str
    shape: ModelShape
    layout: Layout
    gpu: GpuType
    stage: int
    """The pipeline stage the breakdown is for (the fullest one)."""
    memory: MemoryBreakdown
    problems: list[str]
    """Reasons this layout cannot run on this GPU count, besides memory."""
    speed: SpeedEstimate

    @property
    def headroom_bytes(self) -> float:
        return self.gpu.memory_bytes - self.memory.total

    @property
    def headroom_fraction(self) -> float:
        return self.headroom_bytes / self.gpu.memory_bytes

    @property
    def fits_in_memory(self) -> bool:
        return self.headroom_bytes >= 0

    @property
    def fits(self) -> bool:
        return self.fits_in_memory and not self.problems

    def variant(self, **changes) -> MemoryBreakdown:
        """The same stage's breakdown with some layout fields changed (for with / without comparisons)."""
        return stage_memory(self.shape, replace(self.layout, **changes), self.stage)


def _divides(part: int, whole: int) -> bool:
    return whole % part == 0


def layout_problems(shape: ModelShape, layout: Layout) -> list[str]:
    """Everything that stops Megatron from running this layout at all, each with the fix."""
    problems, mp = [], layout.model_parallel
    if not _divides(mp, layout.world_size):
        nodes = math.lcm(mp, layout.gpus_per_node) // layout.gpus_per_node
        problems.append(f"TP x PP x CP = {mp} GPUs does not divide the {layout.world_size} GPUs; "
                        f"use a multiple of {mp} GPUs (--nodes a multiple of {nodes}) or smaller TP/PP/CP")
    elif not _divides(layout.micro_batch * layout.dp, layout.global_batch):
        problems.append(f"training.global_batch_size: {layout.global_batch} is not divisible by micro batch "
                        f"{layout.micro_batch} x DP {layout.dp}; use a multiple of {layout.micro_batch * layout.dp}")
    for count, what in ((shape.num_attention_heads, "attention heads"), (shape.num_query_groups, "KV groups")):
        if not _divides(layout.tp, count):
            problems.append(f"parallelism.tensor_model_parallel_size: {layout.tp} does not divide the {count} {what}")
    chunks = layout.pp * (layout.vpp or 1)
    if not _divides(chunks, shape.num_layers):
        problems.append(f"parallelism: PP {layout.pp} x VPP {layout.vpp or 1} does not divide the "
                        f"{shape.num_layers} layers; choose sizes whose product divides {shape.num_layers}")
    if layout.cp > 1 and not _divides(2 * layout.cp, layout.seq_length):
        problems.append(f"data.seq_length: {layout.seq_length} must be a multiple of 2 x CP = {2 * layout.cp}")
    return problems


def load_problems(shape: ModelShape, layout: Layout, gpu: GpuType) -> list[str]:
    """precision.fp8_frozen_base quantizes the base after it is loaded in bf16: the load must fit too."""
    if not layout.fp8_frozen_base:
        return []
    need = max(load_peak_bytes(shape, layout, stage) for stage in {0, layout.pp - 1})
    if need <= gpu.memory_bytes:
        return []
    return [f"precision.fp8_frozen_base: the model loads in bf16 before its linears are quantized, "
            f"{need / GIB:.1f} GiB, more than the GPU's {gpu.memory_bytes / GIB:.1f} GiB; "
            "use more pipeline stages (parallelism.pipeline_model_parallel_size) or a GPU with more memory"]


def make_plan(shape: ModelShape, layout: Layout, gpu: GpuType, model: str = "model",
              mfu: float = DEFAULT_MFU) -> Plan:
    stage, memory = fullest_stage(shape, layout)
    return Plan(model=model, shape=shape, layout=layout, gpu=gpu, stage=stage, memory=memory,
                problems=layout_problems(shape, layout) + load_problems(shape, layout, gpu),
                speed=estimate_speed(shape, layout, gpu, mfu))
