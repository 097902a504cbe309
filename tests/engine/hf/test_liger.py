"""model.liger_kernel: refused clearly where it cannot run; on a GPU, the same loss and gradients as the plain
model on the same packed batch."""

import pytest
import torch

from primus_bridge.config import ConfigError
from primus_bridge.engine.hf.liger import apply_liger


def _tiny(model_type: str):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    if model_type == "gpt2":
        return GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64))
    return LlamaForCausalLM(LlamaConfig(num_hidden_layers=2, hidden_size=64, intermediate_size=128,
                                        num_attention_heads=4, num_key_value_heads=2, vocab_size=256))


def test_liger_on_cpu_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match="model.liger_kernel: .*Triton GPU kernels; this run is on cpu"):
        apply_liger(_tiny("llama"), torch.device("cpu"))


def test_a_family_liger_has_no_kernels_for_is_refused():
    with pytest.raises(ConfigError, match="no kernels for model_type 'gpt2'"):
        apply_liger(_tiny("gpt2"), torch.device("cuda"))


@pytest.mark.gpu
def test_liger_fused_loss_equals_the_plain_loss_and_gradients_on_a_gpu(monkeypatch):
    """Same weights, same packed rows (two documents per row, sparse labels): the fused linear cross-entropy's
    loss sum and the adapters' gradients match the plain model's within bf16 rounding. The plain reference runs
    first: liger-kernel's entry point also replaces module-level functions of transformers' Llama code, which
    the monkeypatch restores after the test."""
    import copy

    from peft import LoraConfig, get_peft_model
    from transformers.models.llama import modeling_llama

    from primus_bridge.engine.hf.batches import Batch
    from primus_bridge.engine.hf.precision import Precision
    from primus_bridge.engine.hf.step import _forward_loss_sum

    for name in ("apply_rotary_pos_emb", "LlamaRMSNorm", "LlamaMLP"):
        monkeypatch.setattr(modeling_llama, name, getattr(modeling_llama, name))
    device = torch.device("cuda")
    torch.manual_seed(0)
    base = _tiny("llama").to(device)
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "gate_proj", "down_proj"],
                      init_lora_weights=False)  # random A and B: every adapter gets a gradient
    ids = torch.randint(0, 256, (2, 64), device=device)
    labels = torch.full_like(ids, -100)
    labels[:, 20:31], labels[1, 50:63] = ids[:, 21:32], ids[1, 51:64]
    positions = torch.cat([torch.arange(32), torch.arange(32)]).repeat(2, 1).to(device)
    batch = Batch(ids, labels, positions, None, torch.bfloat16)
    precision = Precision(torch.bfloat16, "test")

    def loss_and_grads(model, fused_loss: bool) -> tuple[float, dict]:
        model.train()
        loss = _forward_loss_sum(model, batch, precision, device, logits_to_keep=True, fused_loss=fused_loss)
        loss.backward()
        return loss.item(), {n: p.grad for n, p in model.named_parameters() if p.requires_grad}

    plain = get_peft_model(copy.deepcopy(base), lora)
    plain_sum, plain_grads = loss_and_grads(plain, False)
    fused_base = copy.deepcopy(base)
    apply_liger(fused_base, device)
    fused = get_peft_model(fused_base, lora)
    fused.load_state_dict(plain.state_dict())
    fused_sum, fused_grads = loss_and_grads(fused, True)
    assert abs(plain_sum - fused_sum) <= 2e-2 * abs(plain_sum)
    assert fused_grads.keys() == plain_grads.keys()
    for name, ref in plain_grads.items():
        assert torch.linalg.vector_norm(fused_grads[name] - ref) <= 5e-2 * torch.linalg.vector_norm(ref) + 1e-6, name
