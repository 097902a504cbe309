"""The megatron engine's NaN / Inf stop, on the CPU: every run checks the step's gradient norm before the update
(registry entry `nonfinite_grad_norm`) instead of Megatron-Core's in-pass checks, which read on the host (the
whole run on a GPU: tests/reliability/test_megatron_guards.py)."""

import math

import pytest
import torch

from primus_bridge.config import PrimusConfig


def _ddp_fp32_linear():
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
    from megatron.core.tensor_parallel import ColumnParallelLinear
    from megatron.core.transformer.transformer_config import TransformerConfig

    config = TransformerConfig(num_layers=1, hidden_size=16, num_attention_heads=4, use_cpu_initialization=True)
    linear = ColumnParallelLinear(16, 8, config=config, init_method=torch.nn.init.normal_, bias=False,
                                  gather_output=False)
    return DistributedDataParallel(config, DistributedDataParallelConfig(use_distributed_optimizer=False), linear)


def _chained_optimizer(model, monkeypatch):
    """Megatron-Core's ChainedOptimizer over its FP32Optimizer, as get_megatron_optimizer chains every run's.
    CPU accommodations: FP32Optimizer makes its loss scale, and Megatron-Core's norm its buffers, on "cuda"; here
    the scale is made on the CPU and the inner optimizer's norm is the same 2-norm of the gradients, computed on
    the CPU (the chain's own get_grad_norm, the one the entry wraps, is Megatron-Core's)."""
    from megatron.core.optimizer import OptimizerConfig
    from megatron.core.optimizer.optimizer import ChainedOptimizer, FP32Optimizer

    config = OptimizerConfig(optimizer="adam", lr=1e-2, clip_grad=0.0)  # the chain reads the norm anyway
    inner = torch.optim.AdamW(model.parameters(), lr=1e-2)
    make_tensor = torch.tensor
    with monkeypatch.context() as cpu:
        cpu.setattr(torch, "tensor", lambda *args, device=None, **kwargs: make_tensor(*args, **kwargs))
        fp32 = FP32Optimizer(inner, config, init_state_fn=None)
    grads = lambda: [p.grad for p in model.parameters() if p.grad is not None]  # noqa: E731
    monkeypatch.setattr(fp32, "get_grad_norm", lambda: float(torch.linalg.vector_norm(torch.cat(
        [g.flatten() for g in grads()]))))
    return ChainedOptimizer([fp32])


def _rerun_machine(tmp_path):
    from megatron.core import rerun_state_machine as rerun

    from primus_bridge.engine.megatron.container import rerun_section

    rerun.destroy_rerun_state_machine()
    rerun.initialize_rerun_state_machine(mode=rerun.RerunMode(rerun_section().rerun_mode),
                                         result_rejected_tracker_filename=str(tmp_path / "rejected.txt"))
    assert rerun.get_rerun_state_machine().should_run_forward_backward(None)  # train's loop, step 1
    return rerun


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_nonfinite_gradient_stops_megatrons_optimizer_before_its_update(megatron_cpu, monkeypatch, tmp_path, bad):
    """The `nonfinite_grad_norm` entry: Megatron-Core's ChainedOptimizer.step raises its rerun state machine's
    error for a NaN / Inf gradient norm before it touches a weight; the engine reads it as the non-finite stop."""
    from megatron.core.optimizer.optimizer import ChainedOptimizer

    from primus_bridge.engine.megatron.compat.grad_norm_check import ENTRY
    from primus_bridge.engine.megatron.compat.marker import installed_by
    from primus_bridge.engine.megatron.engine import nonfinite_error

    assert installed_by(ChainedOptimizer.get_grad_norm) == ENTRY
    model = _ddp_fp32_linear()
    optimizer = _chained_optimizer(model, monkeypatch)
    weight = model.module.weight
    before = weight.detach().clone()
    rerun = _rerun_machine(tmp_path)
    try:
        weight.main_grad.fill_(0.01)  # DDP's gradient buffer, which the optimizer reads
        assert optimizer.step()[0] and not torch.equal(weight, before), "a finite gradient updates"
        updated = weight.detach().clone()
        weight.main_grad[0, 0] = bad
        with pytest.raises(RuntimeError) as raised:
            optimizer.step()
    finally:
        rerun.destroy_rerun_state_machine()
    assert torch.equal(weight, updated), "stopped before the update"
    stop = nonfinite_error(raised.value, str(tmp_path))
    word = "NaN" if math.isnan(bad) else "Inf"
    # an Inf entry makes the norm Inf (the sum of squares overflows no further)
    assert stop is not None and str(stop).startswith(f"training diverged at step 1: found {word} in grad norm;")


def test_every_run_checks_the_gradient_norm_only():
    from primus_bridge.engine.megatron.container import ddp_section, rerun_section

    for cfg in (PrimusConfig(), PrimusConfig.model_validate({"model": {"cuda_graph": "full_iteration"}})):
        assert not ddp_section(cfg).check_for_nan_in_grad
    settings = rerun_section()
    assert not settings.check_for_nan_in_loss and not settings.check_for_spiky_loss
    assert settings.rerun_mode == "disabled"  # the gradient-norm check raises at once


def test_a_nan_loss_reaches_the_optimizer_unread_and_stops_it(megatron_cpu, monkeypatch, tmp_path):
    """With the product's settings the loss function reads nothing on the host, even for a NaN token loss; its
    backward through DDP's gradient buffer makes the step's gradient norm NaN, and the optimizer stops."""
    from megatron.bridge.training.losses import masked_next_token_loss

    from primus_bridge.engine.megatron.container import rerun_section
    from primus_bridge.engine.megatron.engine import nonfinite_error

    model = _ddp_fp32_linear()
    optimizer = _chained_optimizer(model, monkeypatch)
    inputs = torch.randn(3, 16)
    inputs[1, 0] = float("nan")  # the second token's loss is NaN
    rerun = _rerun_machine(tmp_path)
    try:
        token_losses = model(inputs)[0].pow(2).mean(-1)
        loss = masked_next_token_loss(torch.ones(3), token_losses,
                                      check_for_nan_in_loss=rerun_section().check_for_nan_in_loss)[0]
        assert torch.isnan(loss), "the loss function let it through"
        loss.backward()  # DDP's hook adds the gradient into its buffer (one rank: no reduction to run)
        assert torch.isnan(model.module.weight.main_grad).any()
        with pytest.raises(RuntimeError) as raised:
            optimizer.step()
    finally:
        rerun.destroy_rerun_state_machine()
    stop = nonfinite_error(raised.value, str(tmp_path))
    assert stop is not None and str(stop).startswith("training diverged at step 1: found NaN in grad norm;")
    assert nonfinite_error(raised.value, None, step=41).step == 41, "the run's step, when the engine knows it"
    assert nonfinite_error(RuntimeError("CUDA out of memory"), None) is None
