"""The one-rank LoRA adapter path computes what Megatron-Bridge's adapter computes, outputs and gradients."""

import pytest
import torch

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


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
    from megatron.bridge import AutoBridge
    from megatron.bridge.peft.utils import ParallelLinearAdapter
    from megatron.bridge.training.utils.packed_seq_utils import get_packed_seq_params

    from primus_bridge.config.sections.lora import LoraConfig
    from primus_bridge.engine.megatron.layer_spec import use_local_spec
    from primus_bridge.engine.megatron.lora import build_peft
    from primus_bridge.engine.megatron.lora_fast_path import use_lora_fast_path
    from primus_bridge.models.tiny import build_tiny_llama

    use_lora_fast_path()
    installed = ParallelLinearAdapter.forward
    use_lora_fast_path()
    assert ParallelLinearAdapter.forward is installed and installed.__wrapped__ is not None

    provider = AutoBridge.from_hf_pretrained(str(build_tiny_llama(tokenizer_dir, tmp_path / "tiny"))
                                             ).to_megatron_provider(load_weights=False)
    use_local_spec(provider)
    provider.finalize()
    model = provider.provide_distributed_model(wrap_with_ddp=False, use_cpu_initialization=True)
    model = build_peft(LoraConfig(use_lora=True, lora_rank=4, lora_target_modules=ALL_LINEAR))(model, training=True)
    model = model[0].train()
    for name, param in model.named_parameters():
        if "linear_out" in name:  # B starts at zero: give it values so every gradient is non-zero
            torch.nn.init.normal_(param, std=0.02)
    lengths, total = [5, 11, 16], 32
    cu = torch.tensor([0, 5, 16, 32], dtype=torch.int32)
    tokens = torch.randint(0, 100, (1, total), generator=torch.Generator().manual_seed(3))
    params = get_packed_seq_params({"cu_seqlens_q": cu, "cu_seqlens_kv": cu, "max_seqlen_q": max(lengths),
                                    "max_seqlen_kv": max(lengths)})
    positions = torch.cat([torch.arange(n) for n in lengths])[None]

    def loss_and_grads():
        torch.manual_seed(5)  # the same adapter dropout masks for both paths
        loss = model(input_ids=tokens, position_ids=positions, attention_mask=None, labels=tokens,
                     packed_seq_params=params).sum()
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        model.zero_grad(set_to_none=True)
        return loss.detach(), grads

    fast_loss, fast_grads = loss_and_grads()
    ParallelLinearAdapter.forward = installed.__wrapped__
    try:
        library_loss, library_grads = loss_and_grads()
    finally:
        ParallelLinearAdapter.forward = installed
    torch.testing.assert_close(fast_loss, library_loss, rtol=1e-6, atol=1e-6)
    assert len(fast_grads) == 4 * 2 * provider.num_layers
    for name, grad in library_grads.items():
        assert grad.abs().max() > 0, name
        torch.testing.assert_close(fast_grads[name], grad, rtol=1e-5, atol=1e-6)
