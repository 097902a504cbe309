"""packed_rope: Megatron-Core's THD RoPE bit for bit on the CPU, with no per-document work and no host reads; the
rotation fused on the GPU (`fused_rope`, compiled here on the CPU) against Megatron-Core's arithmetic."""

import re
import shutil

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


# -- the fused rotation ------------------------------------------------------------------------------------------

needs_compiler = pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                                    reason="torch.compile on the CPU needs a C++ compiler")
"""Marks the tests that compile `fused_rope` for the CPU (seconds each; tens of seconds on a machine's first use of
Inductor), with `slow`."""
EAGER_BF16 = dict(rtol=2 ** -7, atol=2 ** -5)
"""How far Megatron's eager bf16 RoPE may be from a once-rounded one: it rounds cos, sin and both products before
the sum, so where the sum cancels the difference is a few bf16 units of the terms (|t| < 5 here), not of the sum."""
TRANSCENDENTAL = re.compile(r"(?<![A-Za-z])(?:cos|sin)(?![A-Za-z])")
"""cos or sin in compiled code: a kernel named after them, `std::cos(`, a vector `.sin(`, Triton's `libdevice.cos(`."""
VARIANTS = [  # interleaved, rot_dim (DIM: every channel; less: the rest passed through), mscale
    (False, DIM, 1.0), (True, DIM, 1.0), (False, DIM // 2, 0.7), (True, DIM // 2, 0.7)]


def _bshd(t, freqs, interleaved=False, mscale=1.0):
    from megatron.core.models.common.embeddings import rope_utils

    return rope_utils._apply_rotary_pos_emb_bshd(t, freqs, rotary_interleaved=interleaved, mscale=mscale)


def _output_grad(t: torch.Tensor) -> torch.Tensor:
    return torch.linspace(-1, 1, t.numel(), device=t.device).reshape(t.shape).to(t.dtype)


def _rotated(fn, t, freqs, grad_out=None, **kwargs):
    """fn's output and t's gradient for the output gradient `grad_out` (by default `_output_grad(t)`)."""
    t = t.detach().requires_grad_(True)
    out = fn(t, freqs, **kwargs)
    out.backward((_output_grad(t) if grad_out is None else grad_out).to(out.dtype))
    return out.detach(), t.grad


def _stream(tokens: int, heads: int, dtype, seed: int = 0) -> torch.Tensor:
    """[tokens, 1, heads, DIM]: the packed stream as `packed_rope_thd` hands it on."""
    return torch.randn(tokens, 1, heads, DIM, generator=torch.Generator().manual_seed(seed)).to(dtype)


def _token_freqs(tokens: int, rot_dim: int) -> torch.Tensor:
    """Each token's frequencies ([tokens, 1, 1, rot_dim] float32), positions restarting as in packed documents."""
    return _freqs(tokens, rot_dim)[torch.arange(tokens) % 11]


def _errors(got, exact) -> torch.Tensor:
    return (got.double() - exact).abs()


@pytest.mark.parametrize("interleaved,rot_dim,mscale", VARIANTS)
def test_float32_rotation_is_megatrons_arithmetic(interleaved, rot_dim, mscale):
    """In float32 (nothing to round) `rope_in_float32` computes exactly what Megatron-Core's eager function does."""
    from primus_bridge.engine.megatron.compat.packed_rope import rope_in_float32

    t, freqs = _stream(23, 3, torch.float32), _token_freqs(23, rot_dim)
    got = _rotated(rope_in_float32, t, freqs, interleaved=interleaved, mscale=mscale)
    expected = _rotated(_bshd, t, freqs, interleaved=interleaved, mscale=mscale)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


@pytest.mark.parametrize("interleaved,rot_dim,mscale", VARIANTS)
def test_bf16_rotation_rounds_once(interleaved, rot_dim, mscale):
    """bf16: output and gradient within half a bf16 unit of the exact (float64) values; Megatron's eager ops, which
    round after every step, are never closer, and the two agree within `EAGER_BF16`."""
    from primus_bridge.engine.megatron.compat.packed_rope import rope_in_float32

    t, freqs = _stream(64, 3, torch.bfloat16, seed=3), _token_freqs(64, rot_dim)
    kwargs = dict(interleaved=interleaved, mscale=mscale)
    ours, eager = _rotated(rope_in_float32, t, freqs, **kwargs), _rotated(_bshd, t, freqs, **kwargs)
    exact = _rotated(_bshd, t.double(), freqs.double(), grad_out=_output_grad(t), **kwargs)
    for got, theirs, reference in zip(ours, eager, exact):
        assert got.dtype == torch.bfloat16
        assert (_errors(got, reference) <= reference.abs() * 2 ** -8 + 1e-6).all()
        assert _errors(got, reference).max() <= _errors(theirs, reference).max()
        assert _errors(got, reference).mean() < _errors(theirs, reference).mean()
        torch.testing.assert_close(got, theirs, **EAGER_BF16)



def test_the_eager_switch_is_read_at_every_call(monkeypatch):
    """PRIMUS_BRIDGE_EAGER_ROPE=1 selects Megatron-Core's eager rotation on the GPU (test_packed_rope_gpu.py checks
    the dispatch itself); unset or 0, the fused one."""
    from primus_bridge.engine.megatron.compat.packed_rope import (
        EAGER_ROPE_SWITCH,
        eager_rope_requested,
        fused_rope_wanted,
    )

    monkeypatch.delenv(EAGER_ROPE_SWITCH, raising=False)
    assert EAGER_ROPE_SWITCH == "PRIMUS_BRIDGE_EAGER_ROPE" and not eager_rope_requested()
    assert not fused_rope_wanted(torch.zeros(1), mla_rotary_interleaved=False)  # the CPU: Megatron-Core's own
    monkeypatch.setenv(EAGER_ROPE_SWITCH, "1")
    assert eager_rope_requested()
    monkeypatch.setenv(EAGER_ROPE_SWITCH, "0")
    assert not eager_rope_requested()

@needs_compiler
@pytest.mark.slow
@pytest.mark.parametrize("interleaved,rot_dim", [(interleaved, rot_dim) for interleaved, rot_dim, _ in VARIANTS])
def test_compiled_rotation_equals_megatron_in_float32(interleaved, rot_dim):
    """`fused_rotation` (what runs on the GPU) with `rotation_tables`, compiled here by Inductor for the CPU, all four
    variants with mscale != 1: the float32 reference's (`rope_in_float32`, Megatron-Core's arithmetic) forward and
    gradient within float32 rounding (fused multiply-adds may differ in the last bit)."""
    from primus_bridge.engine.megatron.compat.packed_rope import fused_rotation, rotation_tables

    def fused(t, freqs, interleaved, mscale):
        return fused_rotation(t, rotation_tables(freqs, mscale), interleaved)

    t, freqs = _stream(23, 3, torch.float32), _token_freqs(23, rot_dim)
    got = _rotated(fused, t, freqs, interleaved=interleaved, mscale=0.7)
    expected = _rotated(_bshd, t, freqs, interleaved=interleaved, mscale=0.7)
    for got_part, expected_part in zip(got, expected):
        torch.testing.assert_close(got_part, expected_part, rtol=1e-5, atol=1e-5)
    assert torch.equal(got[0][..., rot_dim:], t[..., rot_dim:])  # pass-through channels unchanged


@needs_compiler
@pytest.mark.slow
def test_rotation_tables_are_computed_once_per_micro_batch(cp_group, monkeypatch):
    """The GPU's packed rotation (`fused_packed_rope`, compiled here for the CPU): every layer's queries and keys,
    forward and backward, read the tables the micro batch's first call built; a new micro batch (new cu_seqlens) or
    another mscale builds new ones. The result is Megatron-Core's within float32 rounding."""
    from primus_bridge.engine.megatron.compat import packed_rope

    lengths, built = [5, 9, 2, 7], []
    build = packed_rope._tables._build
    monkeypatch.setattr(packed_rope._tables, "_build", lambda *key: built.append(key) or build(*key))
    cu, freqs = _cu(lengths), _freqs(max(lengths))

    def layers(cu_seqlens, mscale=1.0, count=3):
        for _ in range(count):
            for heads in (4, 2):  # queries and keys
                t = torch.randn(sum(lengths), heads, DIM)
                got = _forward_backward(packed_rope.fused_packed_rope, t, cu_seqlens, freqs, mscale=mscale)
                expected = _forward_backward(_megatron(), t, cu_seqlens, freqs, mscale=mscale, cp_group=cp_group)
                for got_part, expected_part in zip(got, expected):
                    torch.testing.assert_close(got_part, expected_part, rtol=1e-5, atol=1e-5)

    layers(cu)
    assert len(built) == 1
    (token_freqs, mscale), tables = built[0], packed_rope._tables.get(*built[0])
    assert mscale == 1.0 and tables.shape == (sum(lengths), 1, 1, 2 * DIM) and tables.dtype == torch.float32
    assert torch.equal(tables, torch.cat((torch.cos(token_freqs), torch.sin(token_freqs)), dim=-1))
    layers(_cu(lengths), count=1)  # the next micro batch's tensors
    assert len(built) == 2
    layers(cu, mscale=0.7, count=1)
    assert len(built) == 3


def _queries_and_keys(tokens: int, groups: int, heads_per_group: int, seed: int):
    """Megatron-Core's local attention layout: q [tokens, groups * heads_per_group, DIM] copied out of the mixed
    projection, k [tokens, groups, DIM] a strided view of it (as `get_query_key_value_tensors` leaves them)."""
    mixed = torch.randn(tokens, groups, (heads_per_group + 2) * DIM, generator=torch.Generator().manual_seed(seed))
    mixed = mixed.bfloat16().requires_grad_(True)
    queries = mixed[..., :heads_per_group * DIM].reshape(tokens, groups * heads_per_group, DIM)
    keys = mixed[..., heads_per_group * DIM:(heads_per_group + 1) * DIM]
    return mixed, queries, keys


@needs_compiler
@pytest.mark.slow
def test_compiled_rotation_is_one_kernel_each_way_and_serves_queries_keys_and_lengths():
    """bf16 like training: 8 query heads and 2 key heads (a strided view), with and without autograd (validation),
    each a graph of one kernel (forward, backward, no-grad forward) that reads the cos/sin tables and computes
    neither. Graphs are per shape (compile_settings.STATIC_TUNED): after the first micro batch, later ones of the
    same length (packed rows are padded to it) compile nothing, whatever their documents and mscale; another length
    compiles its own. The compiled result is the uncompiled `rope_in_float32`'s up to a last-bit difference, and
    Megatron's within `EAGER_BF16`."""
    from torch._dynamo.utils import counters
    from torch._inductor.utils import run_and_get_code

    from primus_bridge.engine.megatron.compat.packed_rope import fused_rope, rope_in_float32

    def micro_batch(tokens: int, mscale: float, seed: int):
        mixed, queries, keys = _queries_and_keys(tokens, groups=2, heads_per_group=4, seed=seed)
        freqs = _token_freqs(tokens, DIM)
        for t in (queries, keys):
            out = fused_rope(t.unsqueeze(1), freqs, mscale=mscale)
            grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed)).bfloat16()
            (grad,) = torch.autograd.grad(out, t, grad_out)
            for reference in (_bshd, rope_in_float32):
                expected, expected_grad = _rotated(reference, t.unsqueeze(1), freqs, mscale=mscale, grad_out=grad_out)
                tolerance = EAGER_BF16 if reference is _bshd else dict(rtol=2 ** -7, atol=1e-6)  # a last bit
                torch.testing.assert_close(out, expected, **tolerance)
                torch.testing.assert_close(grad, expected_grad.squeeze(1), **tolerance)
        with torch.no_grad():
            assert not fused_rope(keys.unsqueeze(1), freqs, mscale=mscale).requires_grad

    counters.clear()
    with torch._inductor.config.patch(fx_graph_cache=False), torch._functorch.config.patch(enable_autograd_cache=False):
        _, programs = run_and_get_code(micro_batch, 37, 1.0, seed=0)  # every graph compiled, none from the cache
    first_graphs = counters["stats"]["unique_graphs"]
    assert 1 <= first_graphs <= 4, dict(counters["stats"])
    assert len(programs) >= 2 * first_graphs - 1  # forward and backward programs
    assert all(len(re.findall(r"= async_compile\.(?:cpp_pybinding|cpp|triton)\(", code)) == 1 for code in programs)
    assert not any(TRANSCENDENTAL.search(code) for code in programs)  # forward and backward read the tables
    with torch._dynamo.config.patch(error_on_recompile=True):
        for mscale, seed in ((0.7, 2), (1.3, 3)):
            micro_batch(37, mscale, seed)
    assert counters["stats"]["unique_graphs"] == first_graphs
    micro_batch(64, 1.0, 1)  # a run with another micro-batch length: its own graphs, within the raised limit
    assert first_graphs < counters["stats"]["unique_graphs"] <= 2 * first_graphs
