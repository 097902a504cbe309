"""packed_rope on a GPU: the fused rotation (one compiled kernel each way) against Megatron-Core's eager function,
the packed stream's dispatch (fused; Megatron's with PRIMUS_BRIDGE_EAGER_ROPE=1 or MLA interleaving), and the
Llama-3-8B shapes' speed, eager against fused (printed; the fused one must be faster)."""

import pytest
import torch
import torch.distributed as dist
from gpu_timing import device_ms  # same folder
from test_packed_rope import EAGER_BF16, VARIANTS, _bshd, _cu, _errors, _freqs, _output_grad, _rotated  # same folder

from primus_bridge.engine.megatron.compat.packed_rope import (
    EAGER_ROPE_SWITCH,
    _megatron_thd,
    fused_rope,
    packed_rope_thd,
    positions_in_documents,
)

pytestmark = pytest.mark.gpu
DIM = 128


@pytest.fixture(scope="module")
def cp_group():
    """A one-rank group: a context-parallel size of 1, as on a one-GPU run."""
    started = not dist.is_initialized()
    if started:
        dist.init_process_group("gloo", store=dist.HashStore(), world_size=1, rank=0)
    yield dist.group.WORLD
    if started:
        dist.destroy_process_group()


def _cuda_kernels(fn) -> int:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return sum(1 for event in prof.events() if event.device_type == torch.autograd.DeviceType.CUDA)


@pytest.mark.parametrize("interleaved,rot_dim,mscale", [(i, r * 8, m) for i, r, m in VARIANTS])  # head dim 16 -> 128
def test_fused_rope_on_the_gpu_equals_megatron(interleaved, rot_dim, mscale):
    """float32: Megatron-Core's result within float32 rounding. bf16: within half a bf16 unit of the exact values and
    never further from them than Megatron's eager ops; forward and gradient."""
    kwargs = dict(interleaved=interleaved, mscale=mscale)
    freqs = _freqs(4096, rot_dim)[torch.arange(1000) % 397].cuda()
    t32 = torch.randn(1000, 1, 6, DIM, device="cuda")
    for got, expected in zip(_rotated(fused_rope, t32, freqs, **kwargs), _rotated(_bshd, t32, freqs, **kwargs)):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    t = t32.bfloat16()
    ours, eager = _rotated(fused_rope, t, freqs, **kwargs), _rotated(_bshd, t, freqs, **kwargs)
    exact = _rotated(_bshd, t.double(), freqs.double(), grad_out=_output_grad(t), **kwargs)
    for got, theirs, reference in zip(ours, eager, exact):
        assert (_errors(got, reference) <= reference.abs() * 2 ** -8 + 1e-6).all()
        assert _errors(got, reference).max() <= _errors(theirs, reference).max()
        torch.testing.assert_close(got, theirs, **EAGER_BF16)


def test_packed_stream_on_the_gpu_runs_one_kernel_each_way(cp_group, monkeypatch):
    """`packed_rope_thd` on CUDA tensors: the fused rotation (one kernel forward, one backward; Megatron-Core's loop
    launches dozens), Megatron's within `EAGER_BF16`; MLA interleaving and PRIMUS_BRIDGE_EAGER_ROPE=1 give
    Megatron-Core's result bit for bit."""
    lengths = [300, 17, 1, 900, 45]
    cu, freqs = _cu(lengths).cuda(), _freqs(max(lengths), DIM).cuda()
    t = torch.randn(sum(lengths), 8, DIM, device="cuda").bfloat16().requires_grad_(True)
    megatron = _megatron_thd()(t, cu, freqs, cp_group=cp_group)
    got = packed_rope_thd(t, cu, freqs, cp_group=cp_group)
    token_freqs = freqs[positions_in_documents(cu, sum(lengths))]
    assert torch.equal(got, fused_rope(t.unsqueeze(1), token_freqs).squeeze(1))
    torch.testing.assert_close(got, megatron, **EAGER_BF16)
    grad = torch.randn_like(got)
    got.backward(grad)
    with torch.no_grad():
        packed_rope_thd(t, cu, freqs, cp_group=cp_group)  # compiled (and its launch configuration tuned) first
        assert _cuda_kernels(lambda: packed_rope_thd(t, cu, freqs, cp_group=cp_group)) == 1
    # one kernel forward, one backward, one adding the gradient to t.grad
    assert _cuda_kernels(lambda: packed_rope_thd(t, cu, freqs, cp_group=cp_group).backward(grad)) <= 3
    assert _cuda_kernels(lambda: _megatron_thd()(t, cu, freqs, cp_group=cp_group).backward(grad)) > 20
    assert torch.equal(packed_rope_thd(t, cu, freqs, mla_rotary_interleaved=True, cp_group=cp_group),
                       _megatron_thd()(t, cu, freqs, mla_rotary_interleaved=True, cp_group=cp_group))
    monkeypatch.setenv(EAGER_ROPE_SWITCH, "1")
    assert torch.equal(packed_rope_thd(t, cu, freqs, cp_group=cp_group), megatron)


def _milliseconds_per_layer(rotate, queries, keys, freqs, grads, repeats: int = 20) -> float:
    """One layer's RoPE: queries and keys, forward and backward."""

    def layer():
        for t, grad in zip((queries, keys), grads):
            rotate(t, freqs).backward(grad)
            t.grad = None

    return device_ms(layer, repeats)


def test_llama3_8b_shapes_fused_is_faster_than_eager():
    """q [8192, 32, 128] and k [8192, 8, 128] in bf16, forward and backward: one layer's RoPE, eager and fused.
    Queries and keys share the compiled graph (no recompilation between them or for another length)."""
    from torch._dynamo.utils import counters

    tokens = 8192
    freqs = _freqs(tokens, DIM)[torch.arange(tokens) % 1500].cuda()  # positions restarting in every document
    queries, keys = (torch.randn(tokens, 1, heads, DIM, device="cuda").bfloat16().requires_grad_(True)
                     for heads in (32, 8))
    grads = [torch.randn_like(t) for t in (queries, keys)]
    eager = _milliseconds_per_layer(_bshd, queries, keys, freqs, grads)
    torch._dynamo.reset()
    counters.clear()
    fused = _milliseconds_per_layer(fused_rope, queries, keys, freqs, grads)
    graphs = counters["stats"]["unique_graphs"]
    with torch._dynamo.config.patch(error_on_recompile=True):
        shorter = [t.detach()[:4096].requires_grad_(True) for t in (queries, keys)]
        _milliseconds_per_layer(fused_rope, *shorter, freqs[:4096], [g[:4096] for g in grads], repeats=1)
    assert counters["stats"]["unique_graphs"] == graphs == 1
    print(f"\nLlama-3-8B RoPE per layer (q and k, forward and backward, {torch.cuda.get_device_name()}): "
          f"eager {eager:.3f} ms, fused {fused:.3f} ms ({eager / fused:.2f}x); "
          f"x 32 layers a micro batch: {32 * eager:.1f} ms -> {32 * fused:.1f} ms")
    assert fused < eager
