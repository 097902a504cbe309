"""Weight gradients summed into the fp32 main_grad by the matmul: apex's contract, through Megatron-Core's linears
and DDP, equal to the unfused path's gradients (and closer to the exact sum)."""

import pytest
import torch

from primus_bridge.engine.megatron.compat.marker import installed_by
from primus_bridge.engine.megatron.compat.wgrad_accumulation import (
    ENTRY,
    wgrad_gemm_accum_fp16,
    wgrad_gemm_accum_fp32,
)

TOKENS, IN, OUT = 48, 32, 24


def _operands(dtype=torch.bfloat16):
    generator = torch.Generator().manual_seed(0)
    total_input = torch.randn(TOKENS, IN, generator=generator).to(dtype)
    grad_output = torch.randn(TOKENS, OUT, generator=generator).to(dtype)
    start = torch.randn(OUT, IN, generator=generator)
    return total_input, grad_output, start


def test_fp32_kernel_adds_the_product_without_rounding_it_to_bf16():
    total_input, grad_output, start = _operands()
    exact = start.double() + grad_output.double().t() @ total_input.double()
    main_grad = start.clone()
    wgrad_gemm_accum_fp32(total_input, grad_output, main_grad)
    assert main_grad.dtype == torch.float32
    torch.testing.assert_close(main_grad.double(), exact, rtol=1e-6, atol=1e-5)
    unfused = start + (grad_output.t() @ total_input).float()  # bf16 product, then the DDP hook's add
    assert (main_grad.double() - exact).abs().max() < (unfused.double() - exact).abs().max() / 10


def test_fp16_kernel_accumulates_in_the_operands_dtype():
    total_input, grad_output, start = _operands()
    main_grad = start.to(torch.bfloat16)
    expected = main_grad + grad_output.t() @ total_input
    wgrad_gemm_accum_fp16(total_input, grad_output, main_grad)
    torch.testing.assert_close(main_grad, expected, rtol=2e-2, atol=2e-2)


@pytest.fixture(scope="module")
def layers(megatron_cpu):
    from megatron.core.tensor_parallel import layers

    return layers


def test_prepare_megatron_binds_the_kernels_where_megatron_core_looks_for_apex(layers):
    assert installed_by(layers.fused_weight_gradient_mlp_cuda) == ENTRY
    assert layers._grad_accum_fusion_available is True


def _ddp_linear(fusion: bool):
    """A ColumnParallelLinear under Megatron-Core's DDP (fp32 main grads), bf16 weights as in training."""
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
    from megatron.core.tensor_parallel import ColumnParallelLinear
    from megatron.core.transformer.transformer_config import TransformerConfig

    config = TransformerConfig(num_layers=1, hidden_size=IN, num_attention_heads=4, use_cpu_initialization=True,
                               gradient_accumulation_fusion=fusion, bf16=True, params_dtype=torch.bfloat16)
    torch.manual_seed(0)
    linear = ColumnParallelLinear(IN, OUT, config=config, init_method=torch.nn.init.normal_, bias=False,
                                  gather_output=False)
    ddp_config = DistributedDataParallelConfig(grad_reduce_in_fp32=True, use_distributed_optimizer=False)
    return DistributedDataParallel(config, ddp_config, linear)


def _main_grad_after_two_micro_batches(fusion: bool) -> tuple[torch.Tensor, torch.Tensor]:
    model = _ddp_linear(fusion)
    weight = model.module.weight
    model.zero_grad_buffer()
    batches = [_operands()[:2] for _ in range(2)]
    for index, (x, g) in enumerate(batches):
        out, _ = model(x.unsqueeze(1) * (index + 1))
        out.backward(g.unsqueeze(1))  # DDP's hooks have run: one rank, nothing left to reduce
    exact = sum(g.double().t() @ (x.double() * (i + 1)) for i, (x, g) in enumerate(batches))
    return weight.main_grad.clone(), exact


def test_megatron_ddp_gets_the_unfused_paths_gradient(layers):
    fused, exact = _main_grad_after_two_micro_batches(fusion=True)
    unfused, _ = _main_grad_after_two_micro_batches(fusion=False)
    assert fused.abs().max() > 0
    torch.testing.assert_close(fused.double(), exact, rtol=1e-6, atol=1e-4)  # summed once, in fp32
    torch.testing.assert_close(fused, unfused, rtol=2e-2, atol=0.1)  # the unfused path rounds each to bf16
    assert (fused.double() - exact).abs().max() < (unfused.double() - exact).abs().max()


def test_the_local_spec_turns_it_on_only_for_full_weights_where_it_runs(megatron_cpu):
    from types import SimpleNamespace

    from primus_bridge.engine.megatron.layer_spec import accumulate_wgrad_in_matmul, local_sdpa_layer_spec

    provider = SimpleNamespace(transformer_layer_spec=local_sdpa_layer_spec, gradient_accumulation_fusion=True)
    accumulate_wgrad_in_matmul(provider, trains_full_weights=True)
    assert provider.gradient_accumulation_fusion is torch.cuda.is_available()  # CPU: the placeholders need CUDA
    accumulate_wgrad_in_matmul(provider, trains_full_weights=False)
    assert provider.gradient_accumulation_fusion is False
    te_provider = SimpleNamespace(transformer_layer_spec=object(), gradient_accumulation_fusion=True)
    accumulate_wgrad_in_matmul(te_provider, trains_full_weights=False)
    assert te_provider.gradient_accumulation_fusion is True  # TE's spec: Megatron-Bridge's own default stands


@pytest.mark.gpu
def test_cuda_kernel_sums_in_float32_and_is_available():
    from primus_bridge.engine.megatron.compat.wgrad_accumulation import fp32_accumulator_accepted, fusion_available
    from primus_bridge.engine.megatron.runtime import prepare_megatron

    prepare_megatron()
    total_input, grad_output, start = (t.cuda() for t in _operands())
    exact = start.double() + grad_output.double().t() @ total_input.double()
    main_grad = start.clone()
    wgrad_gemm_accum_fp32(total_input, grad_output, main_grad)
    torch.testing.assert_close(main_grad.double(), exact, rtol=1e-5, atol=1e-4)
    assert fusion_available() and fp32_accumulator_accepted(main_grad.device.index)  # this torch: one GEMM in place
