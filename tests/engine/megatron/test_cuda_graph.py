"""model.cuda_graph: full_iteration, on the CPU: what the engine sets, the static streams and their host bound,
and the gradient-norm check that replaces the in-pass NaN / Inf checks (the recording itself needs a GPU:
test_cuda_graph_gpu.py)."""

import math

import pytest
import torch

from option_checks import config_with, problems_naming  # same folder

from primus_bridge.config import ConfigError, PrimusConfig


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
    rerun.initialize_rerun_state_machine(mode=rerun.RerunMode(rerun_section(PrimusConfig()).rerun_mode),
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


def test_graphed_runs_check_the_gradient_norm_only():
    from primus_bridge.engine.megatron.container import ddp_section, rerun_section

    eager, graphed = PrimusConfig(), PrimusConfig.model_validate({"model": {"cuda_graph": "full_iteration"}})
    assert rerun_section(eager).check_for_nan_in_loss and ddp_section(eager).check_for_nan_in_grad
    assert not rerun_section(graphed).check_for_nan_in_loss and not ddp_section(graphed).check_for_nan_in_grad
    assert rerun_section(graphed).rerun_mode == "disabled"  # the gradient-norm check raises at once


def _graphed(**sections) -> PrimusConfig:
    return config_with({"engine": "megatron", "model": {"cuda_graph": "full_iteration"}}, **sections)


def _errors(cfg) -> list[str]:
    return problems_naming(cfg, "cuda_graph")


def test_option_default_off_and_valid_on_the_megatron_engine():
    assert PrimusConfig().model.cuda_graph == "none"
    assert _errors(_graphed()) == []


@pytest.mark.parametrize("sections,needs", [
    ({"engine": "hf"}, "engine: megatron"),
    ({"model": {"transformer_impl": "transformer_engine"}}, "model.transformer_impl: local"),
    ({"parallelism": {"pipeline_model_parallel_size": 2}}, "parallelism.pipeline_model_parallel_size: 1"),
    ({"parallelism": {"context_parallel_size": 2}}, "parallelism.context_parallel_size: 1"),
])
def test_config_refusals_name_the_key_and_the_fix(sections, needs):
    errors = _errors(_graphed(**sections))
    assert len(errors) == 1 and errors[0].startswith(f"model.cuda_graph: full_iteration needs {needs}")
    assert errors[0].endswith("or set model.cuda_graph: none")


def test_engine_refusals_with_te_layers_or_without_a_gpu():
    from primus_bridge.engine.megatron.cuda_graph import check_cuda_graph

    with pytest.raises(ConfigError, match="model.cuda_graph: full_iteration is built for the local spec"):
        check_cuda_graph(_graphed(), "transformer_engine")
    check_cuda_graph(PrimusConfig(), "transformer_engine")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no GPU is visible; set model.cuda_graph: none"):
            check_cuda_graph(_graphed(), "local")


def test_hf_engine_refuses_the_option(tmp_path):
    from primus_bridge.engine.hf.distributed import DistEnv
    from primus_bridge.engine.hf.model import build_model

    env = DistEnv(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
    with pytest.raises(ConfigError, match="model.cuda_graph: full_iteration is a megatron engine option"):
        build_model(_graphed(engine="auto"), env)


def test_a_fresh_run_forgets_the_wrapper_state_an_earlier_run_left(megatron_cpu):
    from megatron.core.full_cuda_graph import FullCudaGraphWrapper, StaticBufferLoader

    from primus_bridge.engine.megatron.cuda_graph import fresh_graph_state

    FullCudaGraphWrapper.curr_iteration = {"training": 7, "validation": 2}
    StaticBufferLoader.static_buffers = {"training": [{"tokens": torch.zeros(3)}], "validation": []}
    model = [torch.nn.Linear(2, 2)]
    assert fresh_graph_state(model) is model
    assert FullCudaGraphWrapper.curr_iteration == {"training": 0, "validation": 0}
    assert FullCudaGraphWrapper.cuda_graph == {"training": None, "validation": None}
    assert StaticBufferLoader.static_buffers == {"training": [], "validation": []}
