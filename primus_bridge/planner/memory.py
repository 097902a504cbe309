"""Per-GPU memory of one pipeline stage, part by part (Megatron mixed-precision training).

Bytes per parameter (Megatron-Core DDP + optimizer, as Megatron-Bridge's recipes set them up):
  weights            2  bf16 / fp16 copy used by forward and backward (4 in plain fp32 training)
  gradients          4  fp32 main-grad buffer of the DDP wrapper (grad_reduce_in_fp32); trainable params only
  optimizer states  12  fp32 master weights + Adam m + Adam v (8 in fp32 training: m, v);
                        divided by DP x CP with the distributed optimizer (ZeRO-1), whole without it
LoRA freezes the base: its weights cost 2 bytes/param and nothing else; the adapters cost all three
rows above (reported together as `lora`).
With precision.fp8_frozen_base the layers' frozen linear weights (q/k/v, o, gate/up, down) cost 1 byte/param
plus a 4-byte scale per output row, and the largest one is re-laid out (1 byte/param) during its backward;
the model still loads in bf16 before they are quantized (`load_peak_bytes`, checked by the plan).
The optimizer step is a second peak, after the backward pass has freed the activations and logits:
torch's Adam (used where neither TransformerEngine nor Apex provides a fused one) makes fp32 working
copies, about 4 bytes per trainable parameter it updates on this GPU (measured on the H200). The
breakdown counts how far that rises above the backward pass's activations + logits
(`optimizer_step_excess`, often 0), so the parts still add up to the peak. With a fused Adam this
over-estimates a little, which a planner may.
Framework overhead: about 1 GiB of CUDA / HIP context (outside PyTorch's allocator) plus 3 GiB of
communication buffers (NCCL / RCCL), BLAS workspaces and kernels; and 5% of all tensor memory for
allocator fragmentation (reserved minus allocated, typical of long runs with varying shapes).
"""

from dataclasses import dataclass, fields

from ..hardware import GIB
from ..models.shape import ModelShape
from .activations import logits_bytes, stage_activation_bytes
from .layout import Layout
from .params import base_params_on_gpu, layers_per_stage, lora_params_on_gpu

GRAD_BYTES = 4
ADAM_STEP_BYTES = 4
FRAMEWORK_OVERHEAD_BYTES = 4 * GIB
FRAGMENTATION = 0.05


@dataclass(frozen=True)
class MemoryBreakdown:
    """Bytes one GPU of one pipeline stage needs at its peak, by part."""

    weights: float
    gradients: float
    optimizer_states: float
    activations: float
    lora: float
    logits: float
    optimizer_step_excess: float
    framework_overhead: float
    allocator_fragmentation: float

    @property
    def tensors(self) -> float:
        """What PyTorch's allocator holds at the peak (compare with torch.cuda.max_memory_allocated)."""
        return self.weights + self.trainable_state + self.activations + self.logits

    @property
    def trainable_state(self) -> float:
        """What training the trainable parameters adds: gradients, optimizer states, the LoRA adapters with theirs,
        and the optimizer step's excess."""
        return self.gradients + self.optimizer_states + self.lora + self.optimizer_step_excess

    @property
    def total(self) -> float:
        return self.tensors + self.framework_overhead + self.allocator_fragmentation

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def weight_bytes(layout: Layout) -> int:
    return 2 if layout.half_precision else 4


def fp8_base_linears(shape: ModelShape, layout: Layout) -> tuple[float, float, float]:
    """With fp8_frozen_base: (FP8 parameters, their output rows, the largest layer's parameters) on one GPU.
    The largest layer is linear_qkv (q, k, v) or linear_fc1 (gate, up)."""
    if not layout.fp8_frozen_base:
        return 0.0, 0.0, 0.0
    dims, layers = shape.linear_dims().values(), layers_per_stage(shape, layout)
    params = layers * sum(inp * out for inp, out in dims) / layout.tp
    rows = layers * sum(out for _, out in dims) / layout.tp
    h = shape.hidden_size
    largest = max(h * (shape.query_size + 2 * shape.kv_size), 2 * h * shape.ffn_hidden_size) / layout.tp
    return params, rows, largest


def base_weight_bytes(shape: ModelShape, layout: Layout, base_params: float) -> float:
    """The base weights' bytes on one GPU while training (see the module doc for fp8_frozen_base)."""
    fp8_params, rows, largest = fp8_base_linears(shape, layout)
    return (base_params - fp8_params) * weight_bytes(layout) + fp8_params + 4 * rows + largest


def load_peak_bytes(shape: ModelShape, layout: Layout, stage: int) -> float:
    """What the GPU holds while the checkpoint loads: the whole base in bf16 (fp8_frozen_base quantizes after)."""
    weights = base_params_on_gpu(shape, layout, stage) * weight_bytes(layout)
    return weights * (1 + FRAGMENTATION) + FRAMEWORK_OVERHEAD_BYTES


def optimizer_shards(layout: Layout, distributed: bool) -> int:
    """Ranks the optimizer's per-parameter work is split over: DP x CP with the distributed optimizer."""
    return layout.dp * layout.cp if distributed else 1


def optimizer_bytes(layout: Layout, distributed: bool) -> float:
    """Optimizer bytes per trainable parameter on one GPU."""
    return (12 if layout.half_precision else 8) / optimizer_shards(layout, distributed)


def trainable_state_bytes(layout: Layout, distributed: bool) -> float:
    """Weights + gradients + optimizer states per trainable parameter."""
    return weight_bytes(layout) + GRAD_BYTES + optimizer_bytes(layout, distributed)


def adam_step_bytes(trainable_params: float, layout: Layout) -> float:
    """torch Adam's fp32 working copies during the step, for the trainable parameters this GPU updates."""
    return ADAM_STEP_BYTES * trainable_params / optimizer_shards(layout, layout.distributed_optimizer)


def stage_memory(shape: ModelShape, layout: Layout, stage: int) -> MemoryBreakdown:
    """The breakdown for one GPU of pipeline stage `stage` (0-based)."""
    base, adapters = base_params_on_gpu(shape, layout, stage), lora_params_on_gpu(shape, layout)
    full = layout.lora is None
    tensors = {
        "weights": base_weight_bytes(shape, layout, base),
        "gradients": base * GRAD_BYTES if full else 0.0,
        "optimizer_states": base * optimizer_bytes(layout, layout.distributed_optimizer) if full else 0.0,
        "activations": stage_activation_bytes(shape, layout, stage),
        "lora": adapters * trainable_state_bytes(layout, layout.distributed_optimizer),
        "logits": logits_bytes(shape, layout) if stage == layout.pp - 1 else 0.0,
    }
    step = adam_step_bytes(base if full else adapters, layout)
    tensors["optimizer_step_excess"] = max(0.0, step - tensors["activations"] - tensors["logits"])
    return MemoryBreakdown(**tensors, framework_overhead=FRAMEWORK_OVERHEAD_BYTES,
                           allocator_fragmentation=FRAGMENTATION * sum(tensors.values()))


def fullest_stage(shape: ModelShape, layout: Layout) -> tuple[int, MemoryBreakdown]:
    """The pipeline stage that needs the most memory (the first holds the most micro batches in
    flight and the embedding; the last holds the output layer and the logits) and its breakdown."""
    stages = {0, layout.pp - 1}
    return max(((s, stage_memory(shape, layout, s)) for s in stages), key=lambda item: item[1].total)
