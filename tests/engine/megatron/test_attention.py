"""SDPACoreAttention equals Megatron-Core's DotProductAttention and a naive block-diagonal reference."""

import itertools

import pytest
import torch

from primus_bridge.engine.megatron.document_mask import dense_document_causal_mask

HEADS, GROUPS, DIM = 4, 2, 16


@pytest.fixture(scope="module")
def transformer_config(megatron_cpu):
    from megatron.core.transformer.transformer_config import TransformerConfig

    return TransformerConfig(num_layers=1, hidden_size=HEADS * DIM, num_attention_heads=HEADS,
                             num_query_groups=GROUPS, kv_channels=DIM, attention_dropout=0.0,
                             use_cpu_initialization=True, masked_softmax_fusion=False)


def _attention(cls, config):
    from megatron.core.transformer.enums import AttnMaskType

    return cls(config=config, layer_number=1, attn_mask_type=AttnMaskType.causal, attention_type="self").eval()


def _qkv(seq, batch, generator):
    q = torch.randn(seq, batch, HEADS, DIM, generator=generator, dtype=torch.float64).float()
    k = torch.randn(seq, batch, GROUPS, DIM, generator=generator, dtype=torch.float64).float()
    v = torch.randn(seq, batch, GROUPS, DIM, generator=generator, dtype=torch.float64).float()
    return q, k, v


def test_unpacked_equals_megatron_dot_product_attention(transformer_config):
    from megatron.core.transformer.dot_product_attention import DotProductAttention

    from primus_bridge.engine.megatron.attention import SDPACoreAttention

    q, k, v = _qkv(24, 3, torch.Generator().manual_seed(0))
    causal_mask = torch.triu(torch.ones(24, 24, dtype=torch.bool), diagonal=1)[None, None]
    expected = _attention(DotProductAttention, transformer_config)(q, k, v, causal_mask)
    got = _attention(SDPACoreAttention, transformer_config)(q, k, v, None)
    assert got.shape == expected.shape == (24, 3, HEADS * DIM)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def _naive_masked_attention(q, k, v, allowed):
    """[t, h, d] inputs, float64, GQA by repeating K/V, softmax over allowed keys only."""
    repeat = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
    scores = torch.einsum("qhd,khd->hqk", q.double(), k.double()) / DIM ** 0.5
    scores = scores.masked_fill(~allowed, float("-inf"))
    return torch.einsum("hqk,khd->qhd", scores.softmax(-1), v.double()).reshape(q.shape[0], -1)


def test_packed_documents_never_attend_across(transformer_config):
    from megatron.core.packed_seq_params import PackedSeqParams

    from primus_bridge.engine.megatron.attention import SDPACoreAttention

    lengths = torch.tensor([5, 17, 1, 30, 11])  # last one plays the padding segment
    cu = torch.zeros(len(lengths) + 1, dtype=torch.int32)
    cu[1:] = lengths.cumsum(0)
    total = int(cu[-1])
    q, k, v = (t.squeeze(1) for t in _qkv(total, 1, torch.Generator().manual_seed(1)))
    params = PackedSeqParams(qkv_format="thd", cu_seqlens_q=cu, cu_seqlens_kv=cu,
                             max_seqlen_q=int(lengths.max()), max_seqlen_kv=int(lengths.max()))
    got = _attention(SDPACoreAttention, transformer_config)(q, k, v, None, packed_seq_params=params)
    expected = _naive_masked_attention(q, k, v, dense_document_causal_mask(cu, total))
    torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=1e-5)

    # FlexAttention with the document block mask (the GPU path; eager here) gives the same.
    from primus_bridge.engine.megatron.attention import run_flex_attention
    from primus_bridge.engine.megatron.document_mask import document_causal_block_mask

    flex = run_flex_attention(*(t.transpose(0, 1).unsqueeze(0) for t in (q, k, v)),
                              document_causal_block_mask(cu, total), DIM ** -0.5, True)
    torch.testing.assert_close(flex.squeeze(0).transpose(0, 1).reshape(total, -1).double(), expected,
                               atol=1e-5, rtol=1e-5)

    # The same tokens attended as one document would differ: the mask is really applied.
    whole = torch.tensor([0, total], dtype=torch.int32)
    unmasked = _naive_masked_attention(q, k, v, dense_document_causal_mask(whole, total))
    assert not torch.allclose(got.double(), unmasked, atol=1e-3)


@pytest.mark.parametrize("lengths", [[8], [3, 5], [1, 1, 1, 5], [2, 1, 4, 1], [1] * 8])
def test_document_ids_number_each_token_by_its_document(lengths):
    from primus_bridge.engine.megatron.document_mask import document_ids

    cu = torch.tensor([0, *itertools.accumulate(lengths)], dtype=torch.int32)
    expected = [index for index, length in enumerate(lengths) for _ in range(length)]
    ids = document_ids(cu, sum(lengths))
    assert ids.dtype == torch.int32 and ids.tolist() == expected


def test_document_ids_never_read_cu_seqlens_back_to_the_host():
    """On meta tensors (shapes, no data) it still runs: nothing in it needs cu_seqlens' values on the host, so on a
    GPU it does not synchronize (an output sized by the data, as repeat_interleave's, fails here)."""
    from primus_bridge.engine.megatron.document_mask import document_ids

    assert document_ids(torch.empty(4, dtype=torch.int32, device="meta"), 10).shape == (10,)


def test_unsupported_settings_are_named(transformer_config):
    import dataclasses

    from primus_bridge.engine.megatron.attention import SDPACoreAttention

    config = dataclasses.replace(transformer_config)
    config.context_parallel_size = 2
    with pytest.raises(ValueError, match="context_parallel_size > 1 needs TransformerEngine"):
        _attention(SDPACoreAttention, config)
