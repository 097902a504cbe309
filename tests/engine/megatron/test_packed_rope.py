"""packed_rope: Megatron-Core's THD RoPE bit for bit, with no per-document work and no host reads."""

import pytest
import torch

DIM = 16


@pytest.fixture(scope="module")
def cp_group(megatron_cpu):
    from megatron.core import parallel_state

    return parallel_state.get_context_parallel_group()


def _freqs(positions: int, dim: int = DIM) -> torch.Tensor:
    """Megatron's RoPE frequency layout: [positions, 1, 1, dim], the two halves equal."""
    inv_freq = 1.0 / (10000 ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    angles = torch.outer(torch.arange(positions, dtype=torch.float32), inv_freq)
    return torch.cat([angles, angles], dim=-1)[:, None, None, :]


def _cu(lengths) -> torch.Tensor:
    return torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)


def _forward_backward(fn, t, *args, **kwargs):
    t = t.detach().requires_grad_(True)
    out = fn(t, *args, **kwargs)
    out.backward(torch.linspace(-1, 1, out.numel()).reshape(out.shape).to(out.dtype))
    return out.detach(), t.grad


def _megatron():
    from primus_bridge.engine.megatron.compat.packed_rope import _megatron_thd

    return _megatron_thd()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("interleaved,mscale", [(False, 1.0), (True, 1.0), (False, 0.7)])
def test_equals_megatron_bit_for_bit(cp_group, dtype, interleaved, mscale):
    from primus_bridge.engine.megatron.compat.packed_rope import packed_rope_thd

    lengths = [5, 17, 0, 1, 30, 11]  # an empty document and a trailing padding segment
    if interleaved:
        lengths.remove(0)  # Megatron-Core's interleaved loop cannot reshape an empty document
    t = torch.randn(sum(lengths), 3, DIM, generator=torch.Generator().manual_seed(0)).to(dtype)
    args = (_cu(lengths), _freqs(max(lengths)))
    kwargs = dict(rotary_interleaved=interleaved, mscale=mscale, cp_group=cp_group)
    expected_out, expected_grad = _forward_backward(_megatron(), t, *args, **kwargs)
    got_out, got_grad = _forward_backward(packed_rope_thd, t, *args, **kwargs)
    assert torch.equal(got_out, expected_out)
    assert torch.equal(got_grad, expected_grad)


def test_whole_stream_frequencies_keep_megatrons_offsets(cp_group):
    """freqs covering the whole stream: Megatron-Core offsets each document by its start, and so do we."""
    from primus_bridge.engine.megatron.compat.packed_rope import packed_rope_thd

    lengths = [9, 4, 19]
    t = torch.randn(sum(lengths), 2, DIM, generator=torch.Generator().manual_seed(1))
    args = (t, _cu(lengths), _freqs(sum(lengths)))
    assert torch.equal(packed_rope_thd(*args, cp_group=cp_group), _megatron()(*args, cp_group=cp_group))


def test_positions_restart_in_every_document():
    from primus_bridge.engine.megatron.compat.packed_rope import positions_in_documents

    got = positions_in_documents(_cu([3, 0, 2, 4]), 9)
    assert got.tolist() == [0, 1, 2, 0, 1, 0, 1, 2, 3]


def _op_counts(fn, lengths, cp_group) -> dict[str, int]:
    t = torch.randn(sum(lengths), 2, DIM, requires_grad=True)
    args = (_cu(lengths), _freqs(max(lengths)))
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn(t, *args, cp_group=cp_group).sum().backward()
    return {event.key: event.count for event in prof.key_averages() if event.key.startswith("aten::")}


def test_work_does_not_grow_with_the_number_of_documents(cp_group):
    """The same operations for 4 documents as for 64, and no host read of cu_seqlens (a GPU sync)."""
    from primus_bridge.engine.megatron.compat.packed_rope import packed_rope_thd

    few, many = [64] * 4, [4] * 64
    ours_few, ours_many = _op_counts(packed_rope_thd, few, cp_group), _op_counts(packed_rope_thd, many, cp_group)
    assert ours_few == ours_many
    assert "aten::_local_scalar_dense" not in ours_many and "aten::item" not in ours_many
    theirs_many = _op_counts(_megatron(), many, cp_group)
    assert sum(theirs_many.values()) > 20 * sum(ours_many.values())  # what the replacement removes
    assert "aten::_local_scalar_dense" in theirs_many


def test_prepare_megatron_routes_megatrons_rope_through_it(cp_group):
    from megatron.core.models.common.embeddings import rope_utils
    from megatron.core.transformer.transformer_config import TransformerConfig

    from primus_bridge.engine.megatron.compat.marker import installed_by, library_original
    from primus_bridge.engine.megatron.compat.packed_rope import ENTRY, use_packed_rope

    use_packed_rope()  # a second call changes nothing
    assert installed_by(rope_utils._apply_rotary_pos_emb_thd) == ENTRY
    assert library_original(rope_utils._apply_rotary_pos_emb_thd) is _megatron()
    assert installed_by(_megatron()) is None
    config = TransformerConfig(num_layers=1, hidden_size=DIM * 2, num_attention_heads=2, use_cpu_initialization=True)
    lengths = [4] * 16
    t = torch.randn(sum(lengths), 2, DIM, requires_grad=True)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        got = rope_utils.apply_rotary_pos_emb(t, _freqs(4), config, cu_seqlens=_cu(lengths), cp_group=cp_group)
    assert "aten::_local_scalar_dense" not in {event.key for event in prof.key_averages()}
    assert torch.equal(got, _megatron()(t, _cu(lengths), _freqs(4), cp_group=cp_group))


def test_an_unexpected_megatron_core_is_named(megatron_cpu, monkeypatch):
    from megatron.core.models.common.embeddings import rope_utils

    from primus_bridge.engine.megatron.compat import CompatError, apply_adaptations

    def different(t, cu_seqlens, freqs, cp_group=None):
        return t

    monkeypatch.setattr(rope_utils, "_apply_rotary_pos_emb_thd", different)
    with pytest.raises(CompatError, match=r"'packed_rope'.*_apply_rotary_pos_emb_thd changed.*written for 0\.19\.2"):
        apply_adaptations()
    assert rope_utils._apply_rotary_pos_emb_thd is different  # nothing replaced


def test_token_frequencies_are_computed_once_per_micro_batch(cp_group):
    """The layers' queries and keys share the micro batch's cu_seqlens and freqs: one lookup, reused."""
    from primus_bridge.engine.megatron.compat import packed_rope

    lengths, calls = [5, 9, 2], []
    cu, freqs = _cu(lengths), _freqs(max(lengths))
    build = packed_rope._token_freqs._build
    packed_rope._token_freqs._build = lambda *key: calls.append(key) or build(*key)
    try:
        for _ in range(3):  # three layers: queries and keys each
            for heads in (4, 2):
                t = torch.randn(sum(lengths), heads, DIM)
                assert torch.equal(packed_rope.packed_rope_thd(t, cu, freqs, cp_group=cp_group),
                                   _megatron()(t, cu, freqs, cp_group=cp_group))
        assert len(calls) == 1
        packed_rope.packed_rope_thd(torch.randn(sum(lengths), 2, DIM), _cu(lengths), freqs, cp_group=cp_group)
        assert len(calls) == 2  # the next micro batch's tensors
    finally:
        packed_rope._token_freqs._build = build
