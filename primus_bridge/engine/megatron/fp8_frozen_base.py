"""`precision.fp8_frozen_base`: LoRA's frozen base linears in FP8, on `torch._scaled_mm`, without TransformerEngine.

Why: under LoRA the base model's linear weights never change and get no gradient. Stored as FP8 (e4m3) with one
scale per output channel they take half of bf16's bytes, and their matmuls run on the FP8 tensor cores (the
matmuls alone: about 1.75x bf16's rate at the Llama-3-8B shapes on an H200). TransformerEngine does this for its
own layer spec (`precision.fp8`); this is the same for Megatron-Core's local spec, which runs where TE is absent.

What changes: the weights of every layer's linear_qkv, linear_proj, linear_fc1 and linear_fc2 (inside a LoRA
wrapper: the wrapped base layer). Adapters, norms, attention, embeddings and the LM head stay in bf16.

How, for a base linear y = x W^T with W [out, in] (`FrozenFp8Linear`):
- W is quantized once, per output channel: W = s_w * W_q, s_w [out] float32.
- forward: x is quantized per row (token) to e4m3 (row amax, scale, cast: `quantize_rows`), then
  `_scaled_mm(x_q, W_q^T)` with the row-wise scales s_x [tokens, 1] and s_w [1, out], in bf16. Nothing is kept
  for the backward but W_q and s_w (no weight gradient).
- backward: dx = dy W = (dy * s_w) W_q. s_w lies on the reduction axis here, where `_scaled_mm` takes no scale,
  so it is folded into dy before dy is quantized per row; gradients use e5m2, as TransformerEngine's hybrid
  recipe does (the range of e5m2 for gradients, the precision of e4m3 for weights and activations).
- layouts: `_scaled_mm` takes its first operand row-major and its second column-major (FP8 tensor cores read
  both along the reduction axis). W_q [out, in] row-major is the column-major second operand of the forward as
  it is (W_q.t(), a view). The backward needs W_q's other orientation ([out, in] column-major, i.e. W_q^T laid
  out row-major). It is re-laid out on the fly (a transposed copy), once per backward call of
  the layer, into a buffer freed right after (out x in bytes: 117 MB for Llama-3-8B's fc1), instead of a stored
  second copy, which would bring the FP8 weights back to bf16's bytes.
- on the GPU each direction is one torch.compile graph (`compiled_fp8_linear`): the quantization is one fused
  kernel (row amax, scale, cast), the re-layout a tiled transposition, and the host issues one call per direction.
- formats: OCP e4m3fn / e5m2 on NVIDIA GPUs (compute capability 8.9+) and AMD MI350 (gfx950); the fnuz variants
  (float8_e4m3fnuz / float8_e5m2fnuz) on MI300 (gfx942), whose FP8 units use them.

Applied after the model is built, its base weights loaded, LoRA applied and the model wrapped (a post-wrap hook of
the model provider, registered by container.py): Megatron-Core's linear layers do their matmul in one method,
`_forward_impl` (for a frozen weight: `linear_with_frozen_weight`), which becomes `fp8_forward_impl` on each
converted layer. Everything around it (bias, the LoRA wrappers and compat/lora_fast_path.py) runs unchanged.
It is the compat registry's entry `fp8_frozen_base` (model phase): the registry verifies Megatron-Core's
`_forward_impl` of both linear layers and `linear_with_frozen_weight` when the process starts.

The export at the end of training (`convert_to_hf`) needs the original bf16 base: the adapters are exported, as
QLoRA's are, for the unquantized model. `restore_bf16_base` loads the converted weights back from the base
checkpoint first (`RestoreBf16Base`, a callback before the export).
"""

import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ...config import ConfigError, PrimusConfig
from .compat.marker import mark
from .compile_settings import STATIC_TUNED, allow_a_graph_per_shape

log = logging.getLogger("primus_bridge")

KEY = "precision.fp8_frozen_base"
ENTRY = "fp8_frozen_base"
"""Its compat registry entry (compat/entries.py)."""
BASE_LINEARS = ("linear_qkv", "linear_proj", "linear_fc1", "linear_fc2")
SCALE_BUFFER = "fp8_weight_scale"
"""Each converted layer's per-output-channel scales (float32 [out]; a non-persistent buffer)."""
MATMUL_ALIGNMENT = 16
"""`_scaled_mm` needs the reduction and output sizes to be multiples of 16."""
AMAX_FLOOR = 1e-12
"""Smallest row maximum used for a scale (an all-zero row quantizes to zeros instead of 0/0)."""
WEIGHT_CHUNK_ROWS = 4096
EAGER_ENV = "PRIMUS_BRIDGE_EAGER_FP8"
"""Set to 1: the FP8 linears run eagerly on the GPU too (not compiled; for A/B runs)."""


@dataclass(frozen=True)
class Fp8Formats:
    values: torch.dtype
    """Weights and activations."""
    gradients: torch.dtype
    """Output gradients in the backward."""


OCP_FORMATS = Fp8Formats(torch.float8_e4m3fn, torch.float8_e5m2)
FNUZ_FORMATS = Fp8Formats(torch.float8_e4m3fnuz, torch.float8_e5m2fnuz)
FNUZ_ARCHS = ("gfx942",)
"""AMD GPUs whose FP8 units use the fnuz formats (MI300); MI350 (gfx950) uses the OCP ones."""
ROCM_FP8_ARCHS = ("gfx942", "gfx950")


def _rocm_arch(device: torch.device) -> str:
    return torch.cuda.get_device_properties(device).gcnArchName.split(":")[0]


def formats_for(device: torch.device) -> Fp8Formats:
    """The FP8 formats the device's matmul units use."""
    if device.type == "cuda" and torch.version.hip and _rocm_arch(device) in FNUZ_ARCHS:
        return FNUZ_FORMATS
    return OCP_FORMATS


def fp8_matmul_problem(device: torch.device | None = None) -> str | None:
    """Why this process's GPU cannot run the row-wise scaled FP8 matmuls (None: it can)."""
    if not torch.cuda.is_available():
        return "no GPU is visible (FP8 matmuls need an NVIDIA GPU of compute capability 8.9+ or an AMD MI300/MI350)"
    device = device or torch.device("cuda", torch.cuda.current_device())
    props = torch.cuda.get_device_properties(device)
    if torch.version.hip:
        arch = _rocm_arch(device)
        if arch not in ROCM_FP8_ARCHS:
            return f"{props.name} ({arch}) has no FP8 matmul units (MI300 gfx942 and MI350 gfx950 have)"
    elif (props.major, props.minor) < (8, 9):
        return (f"{props.name} (compute capability {props.major}.{props.minor}) has no FP8 tensor cores "
                "(compute capability 8.9+: Ada, Hopper, Blackwell)")
    return None


def check_fp8_frozen_base(cfg: PrimusConfig, transformer_impl: str) -> None:
    """ConfigError where the option cannot apply to this megatron run (what the config alone decides is checked by
    config/checks.py): the layer spec and the GPU."""
    if not cfg.precision.fp8_frozen_base:
        return
    if transformer_impl != "local":
        raise ConfigError(f"{KEY}: the model uses TransformerEngine's layers (model.transformer_impl resolves to "
                          f"{transformer_impl}); use precision.fp8 (TransformerEngine's FP8 recipes) there, or set "
                          "model.transformer_impl: local")
    problem = fp8_matmul_problem()
    if problem:
        raise ConfigError(f"{KEY}: {problem}; set {KEY}: false on this GPU")


# -- quantization ------------------------------------------------------------------------------------------------


def quantize_rows(x: torch.Tensor, dtype: torch.dtype,
                  column_scale: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """x [rows, cols] -> (codes in `dtype` [rows, cols], float32 dequantization scales [rows, 1]).

    Each row (times `column_scale` [cols] per column, when given) is scaled so that its largest magnitude becomes
    the format's largest value: row = codes * scale.
    """
    largest = torch.finfo(dtype).max
    values = x.float()
    if column_scale is not None:
        values = values * column_scale
    scale = values.abs().amax(dim=-1, keepdim=True).clamp(min=AMAX_FLOOR) / largest
    return (values / scale).clamp(-largest, largest).to(dtype), scale


def quantize_weight(weight: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """`quantize_rows` of a weight [out, in], WEIGHT_CHUNK_ROWS rows at a time (bounded float32 temporaries)."""
    codes = torch.empty(weight.shape, dtype=dtype, device=weight.device)
    scale = torch.empty(weight.shape[0], 1, dtype=torch.float32, device=weight.device)
    for start in range(0, weight.shape[0], WEIGHT_CHUNK_ROWS):
        rows = slice(start, start + WEIGHT_CHUNK_ROWS)
        codes[rows], scale[rows] = quantize_rows(weight[rows], dtype)
    return codes, scale


def dequantize_rows(codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """float32 values of `quantize_rows`'s output (scale [rows, 1] or [rows])."""
    return codes.float() * scale.reshape(-1, 1)


# -- the matmul --------------------------------------------------------------------------------------------------


def backward_operand(codes: torch.Tensor) -> torch.Tensor:
    """W_q [out, in] as the column-major [out, in] second operand of dy @ W (W_q^T laid out row-major): a copy."""
    return codes.t().contiguous().t()


class FrozenFp8Linear(torch.autograd.Function):
    """y = x W^T with W = scale * codes (frozen): forward and input gradient on `_scaled_mm`, no weight gradient.

    Plain PyTorch operations, so that `fp8_linear` can compile each direction whole (see there)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, codes: torch.Tensor, scale: torch.Tensor, formats: Fp8Formats):
        rows = x.reshape(-1, x.shape[-1])
        x_codes, x_scale = quantize_rows(rows, formats.values)
        out = torch._scaled_mm(x_codes, codes.t(), scale_a=x_scale, scale_b=scale.view(1, -1), out_dtype=x.dtype)
        ctx.save_for_backward(codes, scale)
        ctx.formats = formats
        return out.view(*x.shape[:-1], codes.shape[0])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        codes, scale = ctx.saved_tensors
        rows = grad.reshape(-1, grad.shape[-1])
        grad_codes, grad_scale = quantize_rows(rows, ctx.formats.gradients, column_scale=scale)
        ones = torch.ones(1, codes.shape[1], dtype=torch.float32, device=codes.device)
        grad_x = torch._scaled_mm(grad_codes, backward_operand(codes), scale_a=grad_scale, scale_b=ones,
                                  out_dtype=grad.dtype)
        return grad_x.view(*grad.shape[:-1], codes.shape[1]), None, None, None


def _apply_frozen_fp8_linear(x: torch.Tensor, codes: torch.Tensor, scale: torch.Tensor,
                             formats: Fp8Formats) -> torch.Tensor:
    return FrozenFp8Linear.apply(x, codes, scale, formats)


@functools.cache
def compiled_fp8_linear():
    """`FrozenFp8Linear` compiled whole by torch.compile: one graph forward (quantization kernel + matmul) and one
    backward (quantization, re-layout, matmul) per linear shape (compile_settings.STATIC_TUNED).

    Why whole: compiling only the quantization left six host-side calls per layer and direction (compiled
    quantization, compiled re-layout, the matmuls, the autograd function); on an H100 one base linear's forward +
    input gradient then took 1.2-1.4 ms of host time at every shape, more than the FP8 device time of the
    attention projections (0.3-0.6 ms); compiled whole, 0.8-1.1 ms (bf16's linear: 0.13-0.17 ms), so an eager step
    of FP8 layers is still bound by the host at one 4,096-token row per micro batch (`model.cuda_graph` removes
    that). The re-layout is a plain transposed copy inside the backward graph, where Inductor emits it as a tiled
    kernel (PyTorch's eager copy of a transposed one-byte tensor ran at about a quarter of the memory bandwidth)."""
    allow_a_graph_per_shape()
    return torch.compile(_apply_frozen_fp8_linear, **STATIC_TUNED)


def fp8_linear(x: torch.Tensor, codes: torch.Tensor, scale: torch.Tensor, formats: Fp8Formats) -> torch.Tensor:
    """x @ (scale * codes)^T through `FrozenFp8Linear`: compiled on the GPU (`compiled_fp8_linear`), eager elsewhere
    (the CPU, where it only runs in tests, and PRIMUS_BRIDGE_EAGER_FP8=1 for A/B runs)."""
    if x.device.type == "cuda" and os.environ.get(EAGER_ENV) != "1":
        return compiled_fp8_linear()(x, codes, scale, formats)
    return FrozenFp8Linear.apply(x, codes, scale, formats)


def fp8_forward_impl(module: nn.Module, formats: Fp8Formats, input: torch.Tensor, weight: torch.Tensor,
                     bias: torch.Tensor | None = None, allreduce_dgrad: bool = False, sequence_parallel: bool = False,
                     **_one_rank_options) -> torch.Tensor:
    """A converted layer's `_forward_impl` (Megatron-Core's `linear_with_frozen_weight` on one tensor-parallel
    rank: output = input @ weight^T + bias, no weight gradient)."""
    if allreduce_dgrad or sequence_parallel:
        raise RuntimeError(f"{KEY}: a base linear was called with tensor-parallel communication; "
                           "FP8 base weights support one tensor-parallel rank only")
    output = fp8_linear(input, weight, getattr(module, SCALE_BUFFER), formats)
    return output if bias is None else output + bias


# -- applying it to a model --------------------------------------------------------------------------------------


def base_linears(chunk: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, layer) of every Megatron-Core linear layer named linear_qkv, linear_proj, linear_fc1 or linear_fc2
    (inside a LoRA wrapper: the wrapped layer, named as the wrapper)."""
    from megatron.core.tensor_parallel.layers import ColumnParallelLinear, RowParallelLinear

    found = []
    for name, module in chunk.named_modules():
        name = name.removesuffix(".to_wrap")
        if name.rsplit(".", 1)[-1] in BASE_LINEARS and isinstance(module, (ColumnParallelLinear, RowParallelLinear)):
            found.append((name, module))
    return found


def _check_convertible(name: str, layer: nn.Module) -> None:
    if getattr(layer, "is_expert", False):
        raise ConfigError(f"{KEY}: {name} is a mixture-of-experts layer; FP8 base weights support dense models; "
                          f"set {KEY}: false")
    if layer.weight is None or layer.weight.requires_grad:
        raise ConfigError(f"{KEY}: {name}'s weight is trained; FP8 base weights are for LoRA's frozen base only "
                          f"(lora.use_lora: true), set {KEY}: false")
    if layer.tp_group is not None and layer.tp_group.size() > 1:
        raise ConfigError(f"{KEY}: {name} is split over {layer.tp_group.size()} tensor-parallel ranks; "
                          "use parallelism.tensor_model_parallel_size: 1")


def aligned(layer: nn.Module) -> bool:
    """Whether `_scaled_mm` takes the layer's sizes (both multiples of 16)."""
    return all(size % MATMUL_ALIGNMENT == 0 for size in layer.weight.shape)


def convert_layer(layer: nn.Module, formats: Fp8Formats) -> None:
    """Replace the layer's bf16 weight by its FP8 codes (+ per-output-channel scales) and its matmul by the FP8 one."""
    codes, scale = quantize_weight(layer.weight.detach(), formats.values)
    layer.weight = nn.Parameter(codes, requires_grad=False)
    layer.register_buffer(SCALE_BUFFER, scale.view(-1), persistent=False)
    layer._forward_impl = mark(functools.partial(fp8_forward_impl, layer, formats), ENTRY, layer._forward_impl)


def converted_layers(models: list) -> list[tuple[str, nn.Module]]:
    """The layers of `models` that hold FP8 base weights."""
    return [(name, layer) for chunk in models for name, layer in base_linears(chunk) if hasattr(layer, SCALE_BUFFER)]


def use_fp8_frozen_base(models: list) -> list:
    """Post-wrap hook: every base linear of every model chunk to FP8 (see the module doc); returns `models`."""
    layers = [item for chunk in models for item in base_linears(chunk)]
    if not layers:
        raise ConfigError(f"{KEY}: the model has no Megatron-Core linear layers named {', '.join(BASE_LINEARS)} "
                          "(TransformerEngine's layer spec?); use model.transformer_impl: local")
    device = layers[0][1].weight.device
    problem = fp8_matmul_problem(device) if device.type == "cuda" else None  # CPU: torch's own _scaled_mm
    if problem:
        raise ConfigError(f"{KEY}: {problem}; set {KEY}: false on this GPU")
    formats = formats_for(device)
    kept = []
    for name, layer in layers:
        _check_convertible(name, layer)
        if aligned(layer):
            convert_layer(layer, formats)
        else:
            kept.append(f"{name} {tuple(layer.weight.shape)}")
    if kept:
        log.warning("%s: kept in bf16 (sizes not multiples of %d, which FP8 matmuls need): %s",
                    KEY, MATMUL_ALIGNMENT, "; ".join(kept))
    log.info("%s: %d base linear layers in FP8 (%s / %s)", KEY, len(layers) - len(kept), formats.values,
             formats.gradients)
    return models


# -- back to bf16 for the export ---------------------------------------------------------------------------------


def _bf16_placeholders(layers: list[tuple[str, nn.Module]]) -> set[int]:
    """Each converted layer gets an (unfilled) bf16 weight and its own matmul back; the ids of the new weights."""
    filled = set()
    for _, layer in layers:
        codes = layer.weight
        layer.weight = nn.Parameter(torch.empty(codes.shape, dtype=torch.bfloat16, device=codes.device),
                                    requires_grad=False)
        del layer._buffers[SCALE_BUFFER], layer._forward_impl
        filled.add(id(layer.weight))
    return filled


def restore_bf16_base(models: list, base_checkpoint: Path) -> int:
    """Load the converted layers' bf16 weights back from the base checkpoint (a Megatron iteration folder) in place
    of their FP8 codes; collective (every rank of the run calls it). Returns how many layers were restored."""
    from megatron.bridge.training.checkpointing import _generate_model_state_dict
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.strategies.torch import TorchDistLoadShardedStrategy
    from megatron.core.utils import unwrap_model

    modules = unwrap_model(models)
    layers = converted_layers(modules)
    wanted = _bf16_placeholders(layers)
    common = dist_checkpointing.load_common_state_dict(str(base_checkpoint))
    metadata = dist_checkpointing.load_content_metadata(preloaded_state_dict=common)
    everything = _generate_model_state_dict(modules, {"metadata": metadata})
    sharded = {chunk: {key: item for key, item in state.items() if id(getattr(item, "data", None)) in wanted}
               for chunk, state in everything.items()}
    targets = [(chunk, key, item.data) for chunk, state in sharded.items() for key, item in state.items()]
    if len(targets) != len(layers):
        raise RuntimeError(f"{KEY}: {len(targets)} of the {len(layers)} FP8 base weights are in the model's "
                           "checkpoint layout; cannot restore the bf16 base for the export")
    loaded = dist_checkpointing.load(sharded, str(base_checkpoint), TorchDistLoadShardedStrategy())
    with torch.no_grad():
        for chunk, key, weight in targets:
            if loaded[chunk][key].data_ptr() != weight.data_ptr():  # loaded elsewhere (e.g. gate and up joined)
                weight.copy_(loaded[chunk][key])
    return len(layers)


def restore_callback(base_checkpoint: Path):
    """A Megatron-Bridge callback that restores the bf16 base at the end of training (before the export)."""
    from megatron.bridge.training.callbacks import Callback

    from .model import megatron_iteration

    class RestoreBf16Base(Callback):
        def on_train_end(self, context) -> None:
            iteration = megatron_iteration(base_checkpoint, key="base_checkpoint")
            restored = restore_bf16_base(context.model, iteration)
            log.info("%s: %d base linear layers back in bf16 from %s for the export", KEY, restored, iteration)

    return RestoreBf16Base()
