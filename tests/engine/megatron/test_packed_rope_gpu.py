"""packed_rope on a GPU: the fused rotation (one compiled kernel each way) against Megatron-Core's eager function,
the packed stream's dispatch (fused, with the micro batch's cos/sin tables built once; Megatron's with
PRIMUS_BRIDGE_EAGER_ROPE=1 or MLA interleaving), and the Llama-3.2-3B and Llama-3-8B shapes' speed: eager, cos/sin
computed in the kernel, and the tables read (printed; reading the tables must be the fastest)."""

import pytest
import torch
import torch.distributed as dist
from gpu_reports import write_report  # same folder
from gpu_timing import device_ms  # same folder
from test_packed_rope import EAGER_BF16, VARIANTS, _bshd, _cu, _errors, _freqs, _output_grad, _rotated  # same folder

from primus_bridge.engine.megatron.compile_settings import STATIC_TUNED
from primus_bridge.engine.megatron.compat import packed_rope
from primus_bridge.engine.megatron.compat.packed_rope import (
    EAGER_ROPE_SWITCH,
    _megatron_thd,
    _turned,
    fused_rope,
    fused_rotation,
    packed_rope_thd,
    positions_in_documents,
    rotation_tables,
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
    launches dozens) reading cos/sin tables built once for the micro batch, Megatron's within `EAGER_BF16`; MLA
    interleaving and PRIMUS_BRIDGE_EAGER_ROPE=1 give Megatron-Core's result bit for bit."""
    lengths, built = [300, 17, 1, 900, 45], []
    build = packed_rope._tables._build
    monkeypatch.setattr(packed_rope._tables, "_build", lambda *key: built.append(key) or build(*key))
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
    assert len(built) == 1  # every call above read the micro batch's tables
    assert torch.equal(packed_rope_thd(t, cu, freqs, mla_rotary_interleaved=True, cp_group=cp_group),
                       _megatron_thd()(t, cu, freqs, mla_rotary_interleaved=True, cp_group=cp_group))
    monkeypatch.setenv(EAGER_ROPE_SWITCH, "1")
    assert torch.equal(packed_rope_thd(t, cu, freqs, cp_group=cp_group), megatron)


def _angles_in_kernel(t, freqs):
    """The rotation as compiled before the cos/sin tables (halves, every channel, mscale 1): cos and sin of the angle
    of every element of every head computed inside the kernel. The baseline the tables must beat."""
    x, angles = t.float(), freqs.float()
    return (x * torch.cos(angles) + _turned(x, interleaved=False) * torch.sin(angles)).to(t.dtype)


def _attention_inputs(tokens: int, query_heads: int, key_heads: int):
    """Megatron-Core's local attention layout as `packed_rope_thd` rotates it, [tokens, 1, heads, DIM] bf16 leaves:
    queries copied out of the QKV projection's output, keys a strided view of it."""
    per_group = query_heads // key_heads
    mixed = torch.randn(tokens, key_heads, (per_group + 2) * DIM, device="cuda").bfloat16()
    queries = mixed[..., :per_group * DIM].reshape(tokens, query_heads, DIM)
    keys = mixed[..., per_group * DIM:(per_group + 1) * DIM]
    assert queries.is_contiguous() and not keys.is_contiguous()
    return [t.unsqueeze(1).detach().requires_grad_(True) for t in (queries, keys)]


def _milliseconds_per_call(rotate, t, freqs, grad, repeats: int = 20) -> float:
    """One call's RoPE for t (a layer's queries or keys), forward and backward."""

    def call():
        rotate(t, freqs).backward(grad)
        t.grad = None

    return device_ms(call, repeats)


@pytest.mark.parametrize("model,tokens,query_heads,key_heads", [
    ("Llama-3.2-3B", 4096, 24, 8), ("Llama-3-8B", 8192, 32, 8)])
def test_fused_rotation_reading_tables_is_faster_than_angles_and_eager(model, tokens, query_heads, key_heads):
    """Queries and keys in bf16 at the model's shapes, forward and backward: Megatron-Core's eager ops, the kernel
    computing cos and sin of every element (`_angles_in_kernel`) and `fused_rotation` reading the micro batch's
    tables; the last must be the fastest for queries and for keys. Queries and keys compile a graph each (their
    layouts; compile_settings.STATIC_TUNED: a graph per shape), a second call nothing, another length its own."""
    from torch._dynamo.utils import counters

    freqs = _freqs(tokens, DIM)[torch.arange(tokens) % 1500].cuda()  # positions restarting in every document
    tables = rotation_tables(freqs)
    inputs = _attention_inputs(tokens, query_heads, key_heads)
    grads = [torch.randn_like(t) for t in inputs]
    angles_in_kernel = torch.compile(_angles_in_kernel, dynamic=True, fullgraph=True)
    eager = [_milliseconds_per_call(_bshd, t, freqs, grad) for t, grad in zip(inputs, grads)]
    angles = [_milliseconds_per_call(angles_in_kernel, t, freqs, grad) for t, grad in zip(inputs, grads)]
    torch._dynamo.reset()
    counters.clear()
    fused = [_milliseconds_per_call(fused_rotation, t, tables, grad) for t, grad in zip(inputs, grads)]
    graphs = counters["stats"]["unique_graphs"]
    with torch._dynamo.config.patch(error_on_recompile=True):
        for t, grad in zip(inputs, grads):
            _milliseconds_per_call(fused_rotation, t, tables, grad, repeats=1)
    assert counters["stats"]["unique_graphs"] == graphs and 1 <= graphs <= 2
    for t, grad in zip(inputs, grads):
        shorter = t.detach()[:tokens // 2].requires_grad_(True)
        _milliseconds_per_call(fused_rotation, shorter, tables[:tokens // 2], grad[:tokens // 2], repeats=1)
    assert graphs < counters["stats"]["unique_graphs"] <= 2 * graphs
    print(f"\n{model} RoPE per call, forward and backward ({torch.cuda.get_device_name()}), queries | keys: "
          f"eager {eager[0]:.3f} | {eager[1]:.3f} ms, cos/sin in the kernel {angles[0]:.3f} | {angles[1]:.3f} ms, "
          f"tables {fused[0]:.3f} | {fused[1]:.3f} ms")
    for kind, ours, theirs, megatrons in zip(("queries", "keys"), fused, angles, eager):
        assert ours < theirs, f"{kind}: tables {ours:.3f} ms, cos/sin in the kernel {theirs:.3f} ms"
        assert ours < megatrons, f"{kind}: tables {ours:.3f} ms, eager {megatrons:.3f} ms"


ROPE_COMPILE_VARIANTS = {
    "engine": STATIC_TUNED,  # what _compiled_rotation does: a graph per shape, tuned
    "static_untuned": {"dynamic": False, "fullgraph": True},
    "dynamic": {"dynamic": True, "fullgraph": True},  # the rotation's setting until 2026-12-06: one graph for all
}
"""torch.compile settings timed against each other for the rotation (compile_settings gives the H100's numbers)."""


def test_rotation_compile_variants_speed(repo):
    """Records (asserts nothing about speed): the rotation took 81 us a call on average in 2026-12-06's 8B FP8
    profile (queries and keys, forward and backward) compiled for dynamic shapes, where reading and writing the
    tensors once would take about 16 us; its first run here (session 8) made the engine compile it static and tuned.
    This times it for the Llama-3-8B queries and keys at 4,096 tokens under each of ROPE_COMPILE_VARIANTS,
    beside a clone of the same tensor forward and backward (one read and one write each way: the bound). JSON
    rope-compile-variants.json in $PRIMUS_REPORT_DIR (default benchmarks/reports/megatron-engine)."""
    from primus_bridge.engine.megatron.compat.packed_rope import _halves

    tokens = 4096
    tables = rotation_tables(_freqs(tokens, DIM)[torch.arange(tokens) % 1500].cuda())
    inputs = dict(zip(("queries", "keys"), _attention_inputs(tokens, 32, 8)))
    grads = {kind: torch.randn_like(t) for kind, t in inputs.items()}
    record = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "tokens": tokens,
              "unit": "device ms per call, forward and backward", "variants": {}}
    for variant, settings in ROPE_COMPILE_VARIANTS.items():
        torch._dynamo.reset()
        rotate = torch.compile(_halves, **settings)
        record["variants"][variant] = {kind: round(_milliseconds_per_call(rotate, t, tables, grads[kind]), 4)
                                       for kind, t in inputs.items()}
    record["variants"]["bound_clone"] = {
        kind: round(_milliseconds_per_call(lambda t, _: t.clone(), t, tables, grads[kind]), 4)
        for kind, t in inputs.items()}
    print(f"\n{record}")
    write_report(repo, "rope-compile-variants.json", record)
