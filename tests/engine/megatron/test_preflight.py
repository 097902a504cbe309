"""Errors the megatron engine raises before any GPU work, each naming the key and the fix."""

import json

import pytest

from primus_bridge.config import ConfigError, PrimusConfig

pytestmark = pytest.mark.slow


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
    from primus_bridge.engine.megatron.compat.te_compat import transformer_engine_available

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


def _with_rope(hf_folder, folder, rope_scaling: dict):
    """A copy of the tiny HF model whose config.json has this `rope_scaling` (as the hub's files state it)."""
    import shutil

    shutil.copytree(hf_folder, folder)
    config = json.loads((folder / "config.json").read_text())
    config.pop("rope_parameters", None)
    config.update(rope_theta=500000.0, rope_scaling=rope_scaling)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


LLAMA3_OWN = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 2.0, "high_freq_factor": 8.0,
              "original_max_position_embeddings": 64}
"""llama3 sub-parameters other than Megatron-Core's fixed ones (1, 4, 8192)."""
LLAMA3_31 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
             "original_max_position_embeddings": 8192}
"""Llama 3.1's, which are Megatron-Core's."""


def test_rope_megatron_core_lacks_is_refused_before_the_model_is_built(megatron_cpu, tiny_hf, tmp_path):
    folder = _with_rope(tiny_hf, tmp_path / "dynamic", {"rope_type": "dynamic", "factor": 2.0})
    with pytest.raises(ConfigError) as err:
        _plan({"convert_from_hf": True, "hf_model_name_or_path": str(folder)})
    assert err.value.messages == [
        f"hf_model_name_or_path config.json: rope_scaling.rope_type='dynamic' ({folder}): Megatron-Core has no "
        "dynamic RoPE (it has default, linear, llama3, yarn), so the model would train with positions other than its "
        "own; use engine: hf (transformers runs the model's own RoPE) or a model without it"]


def _checkpoint_of(hf_folder, folder):
    """A Megatron checkpoint folder's run_config.yaml as a run started from `hf_folder` saves it."""
    from primus_bridge.engine.megatron.container import StartingPoint, build_config_container
    from primus_bridge.engine.megatron.model import provider_from_hf

    cfg = PrimusConfig.model_validate({"engine": "megatron", "convert_from_hf": True,
                                       "hf_model_name_or_path": str(hf_folder),
                                       "data": {"data_path": "examples/data/alpaca_sample.jsonl"}})
    folder.mkdir()
    container = build_config_container(cfg, provider_from_hf(hf_folder, "local"),
                                       StartingPoint(folder, None, str(hf_folder)))
    container.to_yaml(str(folder / "run_config.yaml"))
    return folder


def _load_config(checkpoint, hf_folder) -> PrimusConfig:
    return PrimusConfig.model_validate({"model": {"load": str(checkpoint)}, "hf_model_name_or_path": str(hf_folder),
                                        "data": {"data_path": "examples/data/alpaca_sample.jsonl", "seq_length": 256}})


def test_checkpoint_cannot_carry_llama3_sub_parameters(megatron_cpu, tiny_hf, tmp_path):
    """A checkpoint's saved model config has no place for them: --load of such a model is refused, naming them."""
    hf_folder = _with_rope(tiny_hf, tmp_path / "hf", LLAMA3_OWN)
    checkpoint = _checkpoint_of(hf_folder, tmp_path / "ckpt")
    with pytest.raises(ConfigError) as err:
        _plan({"model": {"load": str(checkpoint)}, "hf_model_name_or_path": str(hf_folder),
               "data": {"data_path": "examples/data/alpaca_sample.jsonl", "seq_length": 256}})
    assert err.value.messages == [
        "model.load: hf_model_name_or_path config.json: rope_scaling.low_freq_factor=2.0, "
        f"rope_scaling.high_freq_factor=8.0, rope_scaling.original_max_position_embeddings=64 ({hf_folder}): these "
        "llama3 sub-parameters differ from Megatron-Core's fixed ones ({'low_freq_factor': 1, 'high_freq_factor': 4, "
        "'original_max_position_embeddings': 8192}) and are applied only when the model is built from the HF config "
        "(a checkpoint's saved config cannot hold them); start from the HF model instead (--convert_from_hf "
        "--hf_model_name_or_path HF)"]


def test_checkpoint_of_llama_3_1_keeps_its_rope(megatron_cpu, tiny_hf, tmp_path):
    from primus_bridge.engine.megatron.model import preflight_errors, provider_from_checkpoint

    hf_folder = _with_rope(tiny_hf, tmp_path / "hf", LLAMA3_31)
    provider = provider_from_checkpoint(_checkpoint_of(hf_folder, tmp_path / "ckpt"), "local")
    cfg = _load_config(tmp_path / "ckpt", hf_folder)
    assert (provider.rope_scaling, provider.rope_scaling_factor, provider.rotary_base) == (True, 8.0, 500000.0)
    assert preflight_errors(cfg, provider, 1024) == []


def test_checkpoint_whose_config_differs_from_its_hf_model(megatron_cpu, tiny_hf, tmp_path):
    """E.g. a checkpoint made before its HF model's config gained YaRN: each differing field is named."""
    from primus_bridge.engine.megatron.model import preflight_errors, provider_from_checkpoint

    checkpoint = _checkpoint_of(tiny_hf, tmp_path / "ckpt")
    hf_folder = _with_rope(tiny_hf, tmp_path / "hf", {"type": "yarn", "factor": 4.0,
                                                      "original_max_position_embeddings": 256})
    cfg = _load_config(checkpoint, hf_folder)
    [message] = preflight_errors(cfg, provider_from_checkpoint(checkpoint, "local"), 1024)
    assert message.startswith(f"model.load: the checkpoint's model config does not build the RoPE of {hf_folder}: "
                              "rotary_base=10000.0 (the HF config needs 500000.0), position_embedding_type='rope' "
                              "(the HF config needs 'yarn'), yarn_rotary_scaling_factor=None (the HF config needs 4.0)")
