"""Megatron-Core's torch Adam runs torch's fused kernel on the GPU: the same updates, checkpoints that resume."""

import pytest
import torch

from primus_bridge.engine.megatron.compat.fused_adam import ENTRY, FUSED_DEVICE_TYPES, fuse


def _params() -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(0)
    return [torch.nn.Parameter(torch.randn(shape, generator=generator)) for shape in ((16, 8), (8,), (3, 5))]


def _groups(params) -> list[dict]:
    return [{"params": params[:1], "weight_decay": 0.1}, {"params": params[1:], "weight_decay": 0.0}]


def _steps(optimizer, params, count: int) -> None:
    generator = torch.Generator().manual_seed(1)
    for _ in range(count):
        for param in params:
            param.grad = torch.randn(param.shape, generator=generator)
        optimizer.step()


def test_fused_updates_equal_the_default_implementations():
    reference, fused = _params(), _params()
    plain = torch.optim.AdamW(_groups(reference), lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    switched = torch.optim.AdamW(_groups(fused), lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    assert fuse(switched, device_types=("cpu",))
    assert all(g["fused"] and not g["foreach"] for g in switched.param_groups)
    _steps(plain, reference, 3)
    _steps(switched, fused, 3)
    for got, want, start in zip(fused, reference, _params()):
        assert (want - start).abs().min() > 0  # the steps moved every element
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_a_fused_checkpoint_resumes_fused_and_an_older_one_unfused():
    params = _params()
    switched = torch.optim.AdamW(_groups(params), lr=1e-2)
    fuse(switched, device_types=("cpu",))
    _steps(switched, params, 2)
    resumed = torch.optim.AdamW(_groups(_params()), lr=1e-2)
    resumed.load_state_dict(switched.state_dict())
    assert all(g["fused"] for g in resumed.param_groups)
    assert {state["step"].item() for state in resumed.state.values()} == {2.0}
    _steps(resumed, [p for g in resumed.param_groups for p in g["params"]], 1)  # the fused kernel takes the state

    older = torch.optim.AdamW(_groups(_params()), lr=1e-2)
    _steps(older, [p for g in older.param_groups for p in g["params"]], 2)
    fresh = torch.optim.AdamW(_groups(_params()), lr=1e-2)
    fuse(fresh, device_types=("cpu",))
    fresh.load_state_dict(older.state_dict())
    assert not any(g["fused"] for g in fresh.param_groups)  # the file's flags: the same update, unfused


def test_only_adam_on_the_fused_devices_before_any_step():
    assert FUSED_DEVICE_TYPES == ("cuda",)
    assert not fuse(torch.optim.AdamW(_groups(_params()), lr=1e-2))  # CPU parameters: not in the product's devices
    assert not fuse(torch.optim.SGD(_groups(_params()), lr=1e-2), device_types=("cpu",))
    stepped = torch.optim.AdamW(_groups(params := _params()), lr=1e-2)
    _steps(stepped, params, 1)
    assert not fuse(stepped, device_types=("cpu",))  # its state was made for the other kernel


@pytest.fixture
def ddp_linear(megatron_cpu):
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
    from megatron.core.tensor_parallel import ColumnParallelLinear
    from megatron.core.transformer.transformer_config import TransformerConfig

    config = TransformerConfig(num_layers=1, hidden_size=16, num_attention_heads=4, use_cpu_initialization=True,
                               bf16=True, params_dtype=torch.bfloat16)
    linear = ColumnParallelLinear(16, 8, config=config, init_method=torch.nn.init.normal_, bias=False,
                                  gather_output=False)
    ddp_config = DistributedDataParallelConfig(grad_reduce_in_fp32=True, use_distributed_optimizer=False)
    return DistributedDataParallel(config, ddp_config, linear)


def test_megatron_cores_adam_comes_out_fused_on_the_fused_devices(ddp_linear, monkeypatch):
    """Megatron-Core's own construction (its mixed-precision wrappers need CUDA, so they are skipped here: the
    wrapper sees the torch optimizer as Megatron-Core returns it with `skip_megatron_wrapping`)."""
    from megatron.core import optimizer as megatron_optimizer
    from megatron.core.optimizer import OptimizerConfig

    from primus_bridge.engine.megatron.compat import fused_adam
    from primus_bridge.engine.megatron.compat.marker import installed_by

    build = megatron_optimizer._get_megatron_optimizer_based_on_param_groups
    assert installed_by(build) == ENTRY
    config = OptimizerConfig(optimizer="adam", lr=1e-3, bf16=True, use_distributed_optimizer=False)

    def built():
        groups, _ = megatron_optimizer._get_param_groups_and_buffers(
            [ddp_linear], model_chunk_offset=0, config=config, config_overrides=None, filter_fn=lambda g: True,
            buffer_name="buffers")
        return build(config, [ddp_linear], groups, skip_megatron_wrapping=True)

    inner, _ = built()
    assert isinstance(inner, torch.optim.AdamW) and not inner.param_groups[0]["fused"]  # CPU: not a fused device
    monkeypatch.setattr(fused_adam, "FUSED_DEVICE_TYPES", ("cpu",))  # this machine's parameters stand for a GPU's
    inner, _ = built()
    assert inner.param_groups and all(group["fused"] and not group["foreach"] for group in inner.param_groups)
    assert inner.defaults["fused"] and inner._step_supports_amp_scaling


@pytest.mark.gpu
def test_on_the_gpu_the_fused_kernel_gives_the_foreach_updates_and_resumes():
    reference = [torch.nn.Parameter(p.detach().cuda()) for p in _params()]
    fused = [torch.nn.Parameter(p.detach().cuda()) for p in _params()]
    foreach = torch.optim.AdamW(_groups(reference), lr=1e-2)
    switched = torch.optim.AdamW(_groups(fused), lr=1e-2)
    assert fuse(switched)  # the product's default: GPU parameters
    for _ in range(3):
        for a, b in zip(reference, fused):
            a.grad = torch.randn_like(a)
            b.grad = a.grad.clone()
        foreach.step()
        switched.step()
    for got, want in zip(fused, reference):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    resumed = torch.optim.AdamW(_groups([torch.nn.Parameter(p.detach().clone()) for p in fused]), lr=1e-2)
    resumed.load_state_dict(switched.state_dict())
    assert all(state["step"].is_cuda for state in resumed.state.values())
