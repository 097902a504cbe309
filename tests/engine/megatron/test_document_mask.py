"""The GPU path's document mask: built once per micro batch, and compiled FlexAttention never recompiles for it."""

import shutil

import pytest
import torch

from primus_bridge.engine.megatron.document_mask import (
    block_mask_cache,
    dense_document_causal_mask,
    document_causal_block_mask,
)

pytestmark = pytest.mark.slow

LAYERS, HEADS, DIM = 3, 4, 8


def _cu(lengths) -> torch.Tensor:
    return torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)


def _dense(block_mask, total: int) -> torch.Tensor:
    return block_mask.to_dense().repeat_interleave(block_mask.BLOCK_SIZE[0], -2)[..., :total, :total].bool()


@pytest.fixture(scope="module")
def tiny_gpt(megatron_cpu):
    """A 3-layer Megatron-Core GPTModel on the local SDPA layer spec (the engine's spec without TE)."""
    from megatron.core.models.gpt import GPTModel
    from megatron.core.transformer.transformer_config import TransformerConfig

    from primus_bridge.engine.megatron.layer_spec import local_sdpa_layer_spec

    config = TransformerConfig(num_layers=LAYERS, hidden_size=HEADS * DIM, num_attention_heads=HEADS,
                               num_query_groups=2, ffn_hidden_size=64, normalization="RMSNorm",
                               gated_linear_unit=True, add_bias_linear=False, attention_dropout=0.0,
                               hidden_dropout=0.0, use_cpu_initialization=True, masked_softmax_fusion=False,
                               bias_activation_fusion=False, gradient_accumulation_fusion=False)
    return GPTModel(config, local_sdpa_layer_spec(config), vocab_size=64, max_sequence_length=256,
                    position_embedding_type="rope")


def _micro_batch(model, lengths, seed: int, on_core_attention) -> None:
    """Forward and backward of one packed stream, calling `on_core_attention(packed_seq_params)` in every layer."""
    from megatron.core.packed_seq_params import PackedSeqParams

    hooks = [layer.self_attention.core_attention.register_forward_pre_hook(
        lambda module, args, kwargs: on_core_attention(kwargs["packed_seq_params"]), with_kwargs=True)
        for layer in model.decoder.layers]
    cu, total = _cu(lengths), sum(lengths)
    tokens = torch.randint(0, 64, (1, total), generator=torch.Generator().manual_seed(seed))
    params = PackedSeqParams(qkv_format="thd", cu_seqlens_q=cu, cu_seqlens_kv=cu,
                             max_seqlen_q=max(lengths), max_seqlen_kv=max(lengths))
    try:
        positions = torch.cat([torch.arange(n) for n in lengths])[None]
        model(input_ids=tokens, position_ids=positions, attention_mask=None, labels=tokens,
              packed_seq_params=params).sum().backward()
    finally:
        for hook in hooks:
            hook.remove()


def test_one_block_mask_per_micro_batch(tiny_gpt):
    """Every layer gets the micro batch's own cu_seqlens tensor, so the cache builds one mask per micro batch."""
    cache, seen = block_mask_cache(), []

    def build(params):
        seen.append(cache.get(params.cu_seqlens_q, int(params.cu_seqlens_q[-1])))

    first, second = [40, 7, 81], [12, 100, 16]
    _micro_batch(tiny_gpt, first, 0, build)
    _micro_batch(tiny_gpt, second, 1, build)
    assert len(seen) == 2 * LAYERS
    assert len({id(mask) for mask in seen[:LAYERS]}) == 1 and len({id(mask) for mask in seen[LAYERS:]}) == 1
    assert seen[0] is not seen[LAYERS]
    for masks, lengths in ((seen[:LAYERS], first), (seen[LAYERS:], second)):
        expected = dense_document_causal_mask(_cu(lengths), sum(lengths))
        assert torch.equal(_dense(masks[0], sum(lengths))[0, 0] & expected, expected)  # blocks cover the mask


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="torch.compile on the CPU needs a C++ compiler")
def test_compiled_flex_attention_does_not_recompile_for_new_boundaries():
    """A new micro batch brings new boundaries (a new mask_mod closure): the compiled kernel is reused."""
    import torch.nn.functional as F
    from torch._dynamo.utils import counters

    from primus_bridge.engine.megatron.attention import _compiled_flex_attention

    torch._dynamo.reset()
    counters.clear()
    total, generator = 256, torch.Generator().manual_seed(2)
    with torch._dynamo.config.patch(error_on_recompile=True):
        for lengths in ([40, 100, 116], [7, 249], [256], [60, 60, 60, 60, 16]):
            mask = document_causal_block_mask(_cu(lengths), total)
            q, k, v = (torch.randn(1, HEADS, total, DIM, generator=generator) for _ in range(3))
            got = _compiled_flex_attention()(q, k, v, block_mask=mask)
            allowed = dense_document_causal_mask(_cu(lengths), total)
            torch.testing.assert_close(got, F.scaled_dot_product_attention(q, k, v, attn_mask=allowed),
                                       atol=1e-5, rtol=1e-5)
    assert counters["stats"]["unique_graphs"] == 1
