"""Weight gradients accumulated into Megatron's float32 `main_grad` by the matmul itself, without apex.

Why this module exists: Megatron-Core's local linears (`LinearWithGradAccumulationAndAsyncCommunication`)
either compute each weight gradient in bf16 (`grad_output.t() @ input`), which the DDP hook then adds into
the float32 `main_grad` (a second kernel reading the bf16 gradient and the float32 buffer, writing the
buffer, per weight and micro batch), or, with `gradient_accumulation_fusion`, call apex's
`fused_weight_gradient_mlp_cuda.wgrad_gemm_accum_fp32(input, grad_output, main_grad)`: one GEMM with bf16
inputs and a float32 output accumulated in place (beta = 1). Without apex, Megatron-Core refuses the
option. A Llama-3.2-3B full-SFT step on an H100 (8 micro batches) spent about 114 ms of its 1.42 s of GPU
time in those bf16 -> float32 adds (1,360 element-wise kernels), and the gradient was rounded to bf16 before
it was summed.

`WGRAD_KERNELS` provides the two functions Megatron-Core calls, with apex's contract (main_grad += grad_output^T
@ input, input [tokens, in], grad_output [tokens, out], main_grad [out, in]):
- float32 main_grad: on a GPU `torch.addmm(main_grad, grad_output.t(), input, out_dtype=torch.float32,
  out=main_grad)`, cuBLAS's bf16 GEMM with a float32 C accumulated in place; on other devices the same sum
  with the operands widened to float32 (exact: bf16 and fp16 values are float32 values);
- bf16 / fp16 main_grad: `main_grad.addmm_(grad_output.t(), input)`.
Megatron-Core then hands autograd a placeholder gradient and marks `grad_added_to_main_grad`, so its DDP hook
does not add a second time; a weight shared by two layers (tied embeddings) is marked `zero_out_wgrad` by
Megatron-Core and gets a zero placeholder plus the other layer's gradient (its own design for apex).

Registry entry `wgrad_accumulation_fusion`, installed by `use_wgrad_kernels()` where apex is absent: it binds
`WGRAD_KERNELS` as `layers.fused_weight_gradient_mlp_cuda` and sets `layers._grad_accum_fusion_available`.
`layer_spec.accumulate_wgrad_in_matmul` turns `gradient_accumulation_fusion` on for full-weight training on the
local spec where `fusion_available()` (a GPU: Megatron-Core's placeholder gradients are allocated on
`torch.cuda.current_device()`, so CPU runs keep the unfused path). Whether this torch's `addmm(out_dtype=...)`
accepts a float32 accumulator in place is probed once per device, at the first weight gradient; where it does
not, the kernel adds a bf16 product as the unfused path does (and says so once).
"""

import functools
import importlib.util
import logging
from types import SimpleNamespace

import torch

from .marker import installed_by, mark

log = logging.getLogger("primus_bridge")

ENTRY = "wgrad_accumulation_fusion"
LAYERS_MODULE = "megatron.core.tensor_parallel.layers"
KERNELS_NAME = "fused_weight_gradient_mlp_cuda"
"""apex's module, which Megatron-Core imports as a global of LAYERS_MODULE (the entry's `adds`)."""
AVAILABLE_FLAG = "_grad_accum_fusion_available"


def wgrad_gemm_accum_fp32(total_input: torch.Tensor, grad_output: torch.Tensor, main_grad: torch.Tensor) -> None:
    """main_grad (float32) += grad_output^T @ total_input, summed in float32 without rounding the product to bf16."""
    if not main_grad.is_cuda:
        main_grad.addmm_(grad_output.t().float(), total_input.float())
    elif fp32_accumulator_accepted(main_grad.device.index):
        torch.addmm(main_grad, grad_output.t(), total_input, out_dtype=torch.float32, out=main_grad)
    else:  # an older torch: the unfused path's arithmetic (a bf16 product added to main_grad)
        main_grad.add_(grad_output.t() @ total_input)


@functools.cache
def fp32_accumulator_accepted(device_index: int) -> bool:
    """Whether this torch's CUDA addmm takes bf16 operands with a float32 accumulator in place (`out_dtype`;
    older releases required the accumulator in the operands' dtype): one tiny GEMM on the device, the first time a
    weight gradient reaches it (the device is the rank's by then)."""
    device = torch.device("cuda", device_index)
    accumulator = torch.zeros(16, 16, device=device)
    operand = torch.ones(16, 16, device=device, dtype=torch.bfloat16)
    try:
        torch.addmm(accumulator, operand, operand, out_dtype=torch.float32, out=accumulator)
        accepted = bool(accumulator[0, 0].item() == 16.0)
    except (RuntimeError, TypeError):
        accepted = False
    if not accepted:
        log.warning("torch %s: addmm does not accumulate bf16 products into a float32 tensor in place; weight "
                    "gradients are added after a bf16 matmul, as without gradient accumulation fusion",
                    torch.__version__)
    return accepted


def wgrad_gemm_accum_fp16(total_input: torch.Tensor, grad_output: torch.Tensor, main_grad: torch.Tensor) -> None:
    """main_grad (bf16 or fp16, the inputs' dtype) += grad_output^T @ total_input."""
    main_grad.addmm_(grad_output.t(), total_input)


WGRAD_KERNELS = SimpleNamespace(wgrad_gemm_accum_fp32=wgrad_gemm_accum_fp32,
                                wgrad_gemm_accum_fp16=wgrad_gemm_accum_fp16)
"""Apex's `fused_weight_gradient_mlp_cuda` functions, as Megatron-Core calls them."""


def not_applicable() -> str | None:
    """Why the entry does not apply here (apex's own kernels are bound), or None."""
    if importlib.util.find_spec(KERNELS_NAME):
        return "apex's fused_weight_gradient_mlp_cuda is installed: Megatron-Core binds it"
    return None


def use_wgrad_kernels() -> None:
    """Bind WGRAD_KERNELS where Megatron-Core looks for apex's module (idempotent)."""
    if not_applicable():
        return
    layers = importlib.import_module(LAYERS_MODULE)
    if installed_by(getattr(layers, KERNELS_NAME, None)) != ENTRY:
        setattr(layers, KERNELS_NAME, mark(WGRAD_KERNELS, ENTRY, None))
    setattr(layers, AVAILABLE_FLAG, True)


def fusion_available() -> bool:
    """Whether Megatron-Core's `gradient_accumulation_fusion` can be on for the local spec: on a GPU, with apex's
    kernels or ours bound."""
    if not torch.cuda.is_available():
        return False
    return bool(getattr(importlib.import_module(LAYERS_MODULE), AVAILABLE_FLAG, False))
