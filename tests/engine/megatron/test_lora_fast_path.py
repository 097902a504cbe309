"""The one-rank LoRA adapter path computes what Megatron-Bridge's adapter computes, outputs and gradients."""

import pytest
import torch
from tiny_lora_model import loss_and_grads, packed_stream, tiny_lora_model  # this folder is on sys.path


@pytest.fixture(scope="module")
def transformer_config(megatron_cpu):
    from megatron.core.transformer.transformer_config import TransformerConfig

    return TransformerConfig(num_layers=1, hidden_size=64, num_attention_heads=4, use_cpu_initialization=True)


def _adapter(config, dropout: float, position: str, input_is_parallel: bool):
    from megatron.bridge.peft.utils import ParallelLinearAdapter

    torch.manual_seed(0)
    adapter = ParallelLinearAdapter(64, 96, 8, "decoder.layers.0.self_attention.linear_qkv", activation="identity",
                                    model_parallel_config=config, alpha=32, dropout=dropout,
                                    dropout_position=position, input_is_parallel=input_is_parallel,
                                    row_init_method="normal")
    return adapter.float().train()


def _run(adapter, forward, x):
    torch.manual_seed(1)
    x = x.clone().requires_grad_(True)
    out = forward(adapter, x)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    grads = [x.grad, adapter.linear_in.weight.grad, adapter.linear_out.weight.grad]
    adapter.zero_grad(set_to_none=True)
    return out.detach(), grads


@pytest.mark.parametrize("dropout,position", [(0.0, "pre"), (0.1, "pre"), (0.1, "post")])
@pytest.mark.parametrize("input_is_parallel", [False, True])
def test_fast_path_equals_megatron_bridge(transformer_config, dropout, position, input_is_parallel):
    from megatron.bridge.peft.utils import ParallelLinearAdapter

    from primus_bridge.engine.megatron.lora_fast_path import adapter_forward, is_simple

    adapter = _adapter(transformer_config, dropout, position, input_is_parallel)
    assert is_simple(adapter)
    library = ParallelLinearAdapter.forward.__wrapped__
    x = torch.randn(16, 2, 64)
    expected, expected_grads = _run(adapter, lambda a, t: library(a, t), x)
    got, got_grads = _run(adapter, adapter_forward, x)
    assert expected.abs().max() > 0
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    for g, e in zip(got_grads, expected_grads):
        assert e is not None and e.abs().max() > 0
        torch.testing.assert_close(g, e, rtol=1e-6, atol=1e-6)


def test_other_configurations_keep_megatron_bridge_path(transformer_config):
    from primus_bridge.engine.megatron.lora_fast_path import is_simple

    adapter = _adapter(transformer_config, 0.0, "pre", False)
    adapter.use_a2a = True
    assert not is_simple(adapter)
    fused = _adapter(transformer_config, 0.0, "pre", False)
    fused.config.gradient_accumulation_fusion = True
    try:
        assert not is_simple(fused)
    finally:
        fused.config.gradient_accumulation_fusion = False


def test_installed_once_and_used_by_a_lora_model(megatron_cpu, tokenizer_dir, tmp_path):
    """A whole LoRA model: the same loss and adapter gradients with the fast path as without it."""
    from megatron.bridge.peft.utils import ParallelLinearAdapter

    from primus_bridge.engine.megatron.lora_fast_path import use_lora_fast_path

    use_lora_fast_path()
    installed = ParallelLinearAdapter.forward
    use_lora_fast_path()
    assert ParallelLinearAdapter.forward is installed and installed.__wrapped__ is not None

    model = tiny_lora_model(tokenizer_dir, tmp_path / "tiny", lora_dropout=0.05)[0]
    stream = packed_stream()
    fast_loss, fast_grads, _ = loss_and_grads(model, stream)
    ParallelLinearAdapter.forward = installed.__wrapped__
    try:
        library_loss, library_grads, _ = loss_and_grads(model, stream)
    finally:
        ParallelLinearAdapter.forward = installed
    torch.testing.assert_close(fast_loss, library_loss, rtol=1e-6, atol=1e-6)
    assert len(fast_grads) == 4 * 2 * model.config.num_layers
    for name, grad in library_grads.items():
        assert grad.abs().max() > 0, name
        torch.testing.assert_close(fast_grads[name], grad, rtol=1e-5, atol=1e-6)
