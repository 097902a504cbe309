"""The foreach stand-ins give Megatron-Core's local fallbacks' values, with no host read of device values."""

import pytest
import torch


def _grads(dtype=torch.float32) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(shape, generator=generator).to(dtype) for shape in ((16, 64), (64,), (3, 5, 7), (1,))]


def _no_host_reads(fn) -> None:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    keys = {event.key for event in prof.key_averages()}
    assert "aten::_local_scalar_dense" not in keys and "aten::item" not in keys


def test_l2_norm_equals_megatrons_arithmetic():
    from primus_bridge.engine.megatron.compat.foreach_kernels import foreach_l2_norm

    grads = _grads()
    # Megatron-Core's local_multi_tensor_l2_norm: each tensor's norm as a float, then the norm of those.
    expected = torch.norm(torch.tensor([float(torch.norm(g)) for g in grads]))
    got, per_tensor = foreach_l2_norm(2048 * 32, None, [grads[:2], grads[2:]], False)
    assert got.shape == (1,) and got.dtype == torch.float32 and per_tensor is None
    torch.testing.assert_close(got[0], expected, rtol=1e-6, atol=0)
    _no_host_reads(lambda: foreach_l2_norm(2048 * 32, None, [grads], False))
    assert foreach_l2_norm(2048 * 32, None, [[]], False)[0].tolist() == [0.0]


@pytest.mark.parametrize("in_place", [True, False])
def test_scale_equals_megatrons_loop(in_place):
    from primus_bridge.engine.megatron.compat.foreach_kernels import foreach_scale

    sources = _grads(torch.float32)
    targets = sources if in_place else [torch.empty_like(s, dtype=torch.bfloat16) for s in sources]
    expected = [(s * 0.37).to(t.dtype) for s, t in zip(sources, targets)]  # dst.copy_(src * scale)
    foreach_scale(2048 * 32, None, [sources, targets], 0.37)
    for got, want in zip(targets, expected):
        assert torch.equal(got, want)
    _no_host_reads(lambda: foreach_scale(2048 * 32, None, [sources, targets], 1.0))


def test_prepare_megatron_binds_them_where_megatron_bound_its_fallbacks():
    from megatron.core import utils
    from megatron.core.optimizer import clip_grads, optimizer

    from primus_bridge.engine.megatron.compat import foreach_kernels
    from primus_bridge.engine.megatron.runtime import prepare_megatron

    prepare_megatron()
    foreach_kernels.use_foreach_kernels()  # a second call changes nothing
    assert clip_grads.l2_norm_impl is foreach_kernels.foreach_l2_norm
    assert clip_grads.multi_tensor_scale_impl is foreach_kernels.foreach_scale
    assert optimizer.multi_tensor_scale_impl is foreach_kernels.foreach_scale
    assert utils.local_multi_tensor_l2_norm is foreach_kernels.foreach_l2_norm
