"""model.cuda_graph: full_iteration, on the CPU: what the engine sets, the static streams and their host bound
(the recording itself needs a GPU: test_cuda_graph_gpu.py; the NaN / Inf check a graphed run keeps:
test_nonfinite_grad_norm.py)."""


import pytest
import torch

from option_checks import config_with, problems_naming  # same folder

from primus_bridge.config import ConfigError, PrimusConfig


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


def test_engine_refusals_with_te_layers_or_without_a_gpu(megatron_cpu):  # cuda_graph.py imports Megatron-Bridge
    from primus_bridge.engine.megatron.cuda_graph import check_cuda_graph

    with pytest.raises(ConfigError, match="model.cuda_graph: full_iteration is built for the local spec"):
        check_cuda_graph(_graphed(), "transformer_engine")
    check_cuda_graph(PrimusConfig(), "transformer_engine")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no GPU is visible; set model.cuda_graph: none"):
            check_cuda_graph(_graphed(), "local")


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
