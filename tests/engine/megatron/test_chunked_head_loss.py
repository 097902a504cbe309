"""The chunked frozen-head loss gives Megatron-Core's per-token loss and hidden-state gradient."""

import pytest
import torch

from primus_bridge.engine.megatron.chunked_head_loss import FrozenHeadCrossEntropy

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _reference(hidden, weight, labels):
    """Megatron-Core's unfused path: logits [s, b, V], then its vocab-parallel cross-entropy (TP 1)."""
    from megatron.core import tensor_parallel

    logits = torch.nn.functional.linear(hidden, weight)
    return tensor_parallel.vocab_parallel_cross_entropy(logits.float(), labels.transpose(0, 1).contiguous()
                                                        ).transpose(0, 1)


@pytest.mark.parametrize("chunk", [3, 7, 64])
def test_loss_and_gradient_equal_megatron_core(megatron_cpu, chunk):
    generator = torch.Generator().manual_seed(0)
    s, b, h, vocab = 11, 2, 16, 50
    hidden = torch.randn(s, b, h, generator=generator, dtype=torch.float32)
    weight = torch.randn(vocab, h, generator=generator, dtype=torch.float32)
    labels = torch.randint(0, vocab, (b, s), generator=generator)
    labels[0, 3] = vocab + 5  # out of vocabulary: loss is the log-sum-exp alone, as in Megatron-Core
    upstream = torch.rand(b, s, generator=generator, dtype=torch.float32)

    def loss_and_grad(fn):
        x = hidden.clone().requires_grad_(True)
        loss = fn(x)
        (loss * upstream).sum().backward()
        return loss.detach(), x.grad

    expected, expected_grad = loss_and_grad(lambda x: _reference(x, weight, labels))
    got, got_grad = loss_and_grad(lambda x: FrozenHeadCrossEntropy.apply(x, weight, labels, chunk))
    assert got.shape == (b, s)
    torch.testing.assert_close(got, expected.float(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_grad, expected_grad, rtol=1e-5, atol=1e-6)
    exact = torch.softmax(torch.nn.functional.linear(hidden.double(), weight.double()), -1)
    onehot = torch.nn.functional.one_hot(labels.clamp(max=vocab - 1), vocab).double().transpose(0, 1)
    onehot[3, 0] = 0  # the out-of-vocabulary target contributes no one-hot term
    exact_grad = ((exact - onehot) * upstream.transpose(0, 1)[..., None].double()) @ weight.double()
    torch.testing.assert_close(got_grad.double(), exact_grad, rtol=1e-5, atol=1e-6)


def test_a_lora_model_trains_the_same_with_the_chunked_head(megatron_cpu, tokenizer_dir, tmp_path):
    """Whole tiny LoRA model: same loss and adapter gradients with the chunked head as with Megatron's."""
    from megatron.bridge import AutoBridge
    from megatron.bridge.training.utils.packed_seq_utils import get_packed_seq_params

    from primus_bridge.config.sections.lora import LoraConfig
    from primus_bridge.engine.megatron import chunked_head_loss
    from primus_bridge.engine.megatron.layer_spec import use_local_spec
    from primus_bridge.engine.megatron.lora import build_peft
    from primus_bridge.models.tiny import build_tiny_llama

    provider = AutoBridge.from_hf_pretrained(str(build_tiny_llama(tokenizer_dir, tmp_path / "tiny"))
                                             ).to_megatron_provider(load_weights=False)
    use_local_spec(provider)
    # Megatron-Core's fused cross-entropy is itself ~2e-4 off the exact softmax gradient on the CPU; its
    # unfused cross-entropy is exact to fp32 rounding, so it is the reference here.
    provider.cross_entropy_loss_fusion = False
    provider.finalize()
    model = provider.provide_distributed_model(wrap_with_ddp=False, use_cpu_initialization=True)
    model = build_peft(LoraConfig(use_lora=True, lora_rank=4, lora_dropout=0.0, lora_target_modules=ALL_LINEAR)
                       )(model, training=True)
    for name, param in model[0].named_parameters():
        if "linear_out" in name:
            torch.nn.init.normal_(param, std=0.02)
    lengths = [5, 11, 16]
    cu = torch.tensor([0, 5, 16, 32], dtype=torch.int32)
    tokens = torch.randint(0, 100, (1, 32), generator=torch.Generator().manual_seed(3))
    params = get_packed_seq_params({"cu_seqlens_q": cu, "cu_seqlens_kv": cu, "max_seqlen_q": 16, "max_seqlen_kv": 16})
    positions = torch.cat([torch.arange(n) for n in lengths])[None]

    def loss_and_grads(gpt):
        loss = gpt(input_ids=tokens, position_ids=positions, attention_mask=None, labels=tokens.roll(-1, 1),
                   packed_seq_params=params)
        loss.sum().backward()
        grads = {n: p.grad.clone() for n, p in gpt.named_parameters() if p.requires_grad}
        gpt.zero_grad(set_to_none=True)
        return loss.detach(), grads, type(loss.grad_fn).__name__

    gpt = model[0].train()
    library_loss, library_grads, library_fn = loss_and_grads(gpt)
    handle_count = len(gpt._forward_pre_hooks)
    chunked_head_loss.use_chunked_head_loss(model)
    assert len(gpt._forward_pre_hooks) == handle_count + 1
    chunked_loss, chunked_grads, chunked_fn = loss_and_grads(gpt)
    assert chunked_fn.startswith("FrozenHeadCrossEntropy") and not library_fn.startswith("FrozenHead")
    assert chunked_loss.shape == library_loss.shape == (1, 32)
    torch.testing.assert_close(chunked_loss, library_loss, rtol=1e-5, atol=1e-5)
    for name, grad in library_grads.items():
        assert grad.abs().max() > 0, name
        torch.testing.assert_close(chunked_grads[name], grad, rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # without labels the model still returns logits
        logits = gpt(input_ids=tokens, position_ids=positions, attention_mask=None, packed_seq_params=params)
    assert logits.shape[:2] == (1, 32)


def test_config_names_what_chunked_needs():
    from primus_bridge.config import ConfigError
    from primus_bridge.config.layers import Layer
    from primus_bridge.config.resolve import resolve

    with pytest.raises(ConfigError, match="model.head_loss: chunked needs lora.use_lora"):
        resolve([Layer("test", {"engine": "megatron", "model": {"head_loss": "chunked"}})], world_size=1)
    cfg = resolve([Layer("test", {"engine": "megatron", "model": {"head_loss": "chunked"},
                                  "lora": {"use_lora": True}})], world_size=1)[0]
    assert cfg.model.head_loss == "chunked"

