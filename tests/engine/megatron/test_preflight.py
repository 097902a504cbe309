"""Errors the megatron engine raises before any GPU work, each naming the key and the fix."""

import json

import pytest

from primus_bridge.config import ConfigError, PrimusConfig


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory, tokenizer_dir):
    from primus_bridge.models.tiny import build_tiny_llama

    return build_tiny_llama(tokenizer_dir, tmp_path_factory.mktemp("hf") / "tiny")


def _plan(values: dict):
    from primus_bridge.engine.megatron.engine import plan_run

    return plan_run(PrimusConfig.model_validate({"data": {"data_path": "examples/data/alpaca_sample.jsonl"},
                                                 **values}))


def test_missing_checkpoint(megatron_cpu, tmp_path):
    with pytest.raises(ConfigError, match=r"model.load: .*/nowhere does not exist"):
        _plan({"model": {"load": str(tmp_path / "nowhere")}})


def test_folder_without_a_megatron_checkpoint(megatron_cpu, tmp_path):
    with pytest.raises(ConfigError, match=r"holds no Megatron checkpoint"):
        _plan({"model": {"load": str(tmp_path)}})


def test_no_starting_weights(megatron_cpu):
    with pytest.raises(ConfigError, match="needs starting weights: --load CKPT"):
        _plan({})


def test_unsupported_architecture_lists_the_supported_ones(megatron_cpu, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["FooForCausalLM"], "model_type": "foo"}))
    with pytest.raises(ConfigError) as err:
        _plan({"convert_from_hf": True, "hf_model_name_or_path": str(tmp_path)})
    message = str(err.value)
    assert "FooForCausalLM is not supported" in message
    assert "LlamaForCausalLM" in message and "Qwen2ForCausalLM" in message


def test_hub_id_not_in_the_local_cache(megatron_cpu, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="not in the local HF cache .* there is no network"):
        _plan({"convert_from_hf": True, "hf_model_name_or_path": "meta-llama/Llama-3-8B"})


def test_tp_and_sequence_length_against_the_real_model(megatron_cpu, tiny_hf):
    with pytest.raises(ConfigError) as err:
        _plan({"convert_from_hf": True, "hf_model_name_or_path": str(tiny_hf),
               "parallelism": {"tensor_model_parallel_size": 3}, "data": {"seq_length": 4096}})
    assert err.value.messages == [
        "parallelism.tensor_model_parallel_size: 3 does not divide the model's 4 attention heads; use a divisor of 4",
        "parallelism.tensor_model_parallel_size: 3 does not divide the model's 2 KV groups; use a divisor of 2",
        "parallelism.tensor_model_parallel_size: 3 does not divide the model's 1685 vocabulary entries; use a TP "
        "size that does, or a checkpoint whose vocabulary is padded (e.g. to a multiple of 128)",
        "data.seq_length: 4096 is beyond the model's 1024 positions; use at most 1024",
    ]


def test_transformer_engine_asked_for_but_absent(megatron_cpu, tiny_hf):
    from primus_bridge.engine.megatron.te_compat import transformer_engine_available

    if transformer_engine_available():
        pytest.skip("TransformerEngine is installed here")
    with pytest.raises(ConfigError, match="transformer_impl: transformer_engine, but TransformerEngine does not"):
        _plan({"convert_from_hf": True, "hf_model_name_or_path": str(tiny_hf),
               "model": {"transformer_impl": "transformer_engine"}})


def test_import_runs_in_its_own_process_and_reports_its_errors(tiny_hf, tmp_path):
    """The trainer imports HF weights in a spawned process; a config problem there reaches the caller."""
    import torch

    from primus_bridge.engine.megatron.sources import import_in_child_process, resolve_hf_model

    if torch.cuda.is_available():
        pytest.skip("on a GPU the import succeeds (covered by the GPU tests)")
    with pytest.raises(ConfigError, match="writing a Megatron checkpoint needs a GPU here"):
        import_in_child_process(resolve_hf_model(str(tiny_hf)), tmp_path / "import", "local")
    assert not (tmp_path / "import").exists()
