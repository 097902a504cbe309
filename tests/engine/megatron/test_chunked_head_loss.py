"""The chunked frozen-head loss gives Megatron-Core's per-token loss and hidden-state gradient."""

import pytest
import torch
from tiny_lora_model import loss_and_grads, packed_stream, tiny_lora_model  # this folder is on sys.path

from primus_bridge.engine.megatron.chunked_head_loss import FrozenHeadCrossEntropy

pytestmark = pytest.mark.slow


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


def test_the_chunk_kernels_compile_whole_into_one_pass_and_agree_with_eager():
    """The chunk's loss and logit gradient compile without a graph break (fullgraph) into Inductor's fused kernels:
    on the CPU one kernel (the GPU's may split the reduction from the element-wise pass); an in-place update or a
    scatter would add passes over the [chunk, vocabulary] logits. Compiled and eager agree to rounding."""
    import re

    from torch._inductor.utils import run_and_get_code

    from primus_bridge.engine.megatron.chunked_head_loss import logit_loss_and_gradient

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(48, 1000, generator=generator).bfloat16()
    target = torch.randint(0, 1000, (48,), generator=generator)
    target[3], target[7] = 1000 + 5, -100  # out of vocabulary: no one-hot term, the max as the target logit
    compiled = torch.compile(logit_loss_and_gradient, fullgraph=True)
    (loss, grad), (code, *_) = run_and_get_code(compiled, logits, target, True)
    assert len(re.findall(r"cpp_fused_\w+ = async_compile", code)) == 1, code
    expected_loss, expected_grad = logit_loss_and_gradient(logits, target, True)
    torch.testing.assert_close(loss, expected_loss, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(grad.float(), expected_grad.float(), rtol=0, atol=2**-10)
    sums = grad.float().sum(dim=1)  # softmax minus one-hot: 0 a row; out of vocabulary the softmax alone: 1
    assert grad.dtype == torch.bfloat16 and sums[3] == pytest.approx(1, abs=1e-2) and sums[0].abs() < 1e-2


def test_a_lora_model_trains_the_same_with_the_chunked_head(megatron_cpu, tokenizer_dir, tmp_path):
    """Whole tiny LoRA model: same loss and adapter gradients with the chunked head as with Megatron's."""
    from primus_bridge.engine.megatron import chunked_head_loss

    # Megatron-Core's fused cross-entropy is itself ~2e-4 off the exact softmax gradient on the CPU; its
    # unfused cross-entropy is exact to fp32 rounding, so it is the reference here.
    model = tiny_lora_model(tokenizer_dir, tmp_path / "tiny", lora_dropout=0.0, cross_entropy_fusion=False)
    gpt, stream = model[0], packed_stream()
    library_loss, library_grads, library_fn = loss_and_grads(gpt, stream)
    handle_count = len(gpt._forward_pre_hooks)
    chunked_head_loss.use_chunked_head_loss(model)
    assert len(gpt._forward_pre_hooks) == handle_count + 1
    chunked_loss, chunked_grads, chunked_fn = loss_and_grads(gpt, stream)
    assert chunked_fn.startswith("FrozenHeadCrossEntropy") and not library_fn.startswith("FrozenHead")
    assert chunked_loss.shape == library_loss.shape == (1, 32)
    torch.testing.assert_close(chunked_loss, library_loss, rtol=1e-5, atol=1e-5)
    for name, grad in library_grads.items():
        assert grad.abs().max() > 0, name
        torch.testing.assert_close(chunked_grads[name], grad, rtol=1e-4, atol=1e-5)
    without_labels = {k: v for k, v in stream.items() if k != "labels"}
    with torch.no_grad():  # without labels the model still returns logits
        logits = gpt(**without_labels)
    assert logits.shape[:2] == (1, 32)
    chunked_head_loss._head_weight(gpt).requires_grad_(True)  # a trainable head: Megatron-Core's own path
    assert not loss_and_grads(gpt, stream)[2].startswith("FrozenHead")


def test_auto_leaves_a_small_vocabulary_to_megatron_core(megatron_cpu, tokenizer_dir, tmp_path):
    """Under head_loss auto the chunked loss needs AUTO_MIN_VOCAB entries (the tiny model has fewer)."""
    from primus_bridge.config.head_loss import AUTO_MIN_VOCAB
    from primus_bridge.engine.megatron import chunked_head_loss

    model = tiny_lora_model(tokenizer_dir, tmp_path / "tiny", lora_dropout=0.0)
    vocab = chunked_head_loss._head_weight(model[0]).shape[0]
    assert vocab < AUTO_MIN_VOCAB
    chunked_head_loss.use_chunked_head_loss(model, min_vocab=AUTO_MIN_VOCAB)
    assert not loss_and_grads(model[0], packed_stream())[2].startswith("FrozenHead")
    chunked_head_loss.use_chunked_head_loss(model, min_vocab=vocab)
    assert loss_and_grads(model[0], packed_stream())[2].startswith("FrozenHead")


def test_config_names_what_chunked_needs():
    from primus_bridge.config import ConfigError
    from primus_bridge.config.layers import Layer
    from primus_bridge.config.resolve import resolve

    with pytest.raises(ConfigError, match="model.head_loss: chunked needs lora.use_lora"):
        resolve([Layer("test", {"engine": "megatron", "model": {"head_loss": "chunked"}})], world_size=1)
    cfg = resolve([Layer("test", {"engine": "megatron", "model": {"head_loss": "chunked"},
                                  "lora": {"use_lora": True}})], world_size=1)[0]
    assert cfg.model.head_loss == "chunked"



@pytest.mark.parametrize("values, expected", [
    ({"engine": "megatron", "lora": {"use_lora": True}}, "chunked"),
    ({"engine": "megatron"}, "full"),
    ({"engine": "megatron", "lora": {"use_lora": True}, "model": {"head_loss": "full"}}, "full"),
    ({"engine": "megatron", "lora": {"use_lora": True}, "parallelism": {"tensor_model_parallel_size": 2}}, "full"),
    ({"engine": "hf", "lora": {"use_lora": True}}, "full"),
    ({"engine": "auto", "lora": {"use_lora": True}}, "chunked"),  # the default: the megatron engine on GPUs
])
def test_auto_picks_the_chunked_head_where_it_applies(values, expected):
    from primus_bridge.config.head_loss import head_loss_mode
    from primus_bridge.config.layers import Layer
    from primus_bridge.config.resolve import resolve

    world = values.get("parallelism", {}).get("tensor_model_parallel_size", 1)
    cfg = resolve([Layer("test", values)], world_size=world)[0]
    assert head_loss_mode(cfg) == expected
