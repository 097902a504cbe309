"""The HF model's RoPE on Megatron-Core (engine provider, local spec, float32, CPU): logits equal to HF's for
each variant the engine maps, on plain rows and on packed streams; a ConfigError naming the config.json key
for each it cannot reproduce.

The config.json files are written the way the hub's are (`rope_theta` and `rope_scaling` at the top level),
e.g. Qwen2.5's documented long-context setting `{"type": "yarn", "factor": 4.0,
"original_max_position_embeddings": 32768}`.
"""

import json
from pathlib import Path

import pytest
import torch

from primus_bridge.config import ConfigError

pytestmark = pytest.mark.slow

TINY = dict(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, tie_word_embeddings=False)
ROWS, SEQ = 2, 160
DOCUMENTS = (37, 90, 21)

CASES = {
    # Sub-parameters Megatron-Core does not default to (1, 4, 8192), with frequencies in all three llama3 bands.
    "llama3_sub_parameters": ("llama", 512, 500000.0, {
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 2.0, "high_freq_factor": 8.0,
        "original_max_position_embeddings": 64}),
    # Llama 3.2's (Megatron-Core's sub-parameters, another factor).
    "llama3_megatron_defaults": ("llama", 512, 500000.0, {
        "rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192}),
    "yarn_qwen2.5": ("qwen2", 32768, 1000000.0, {"type": "yarn", "factor": 4.0,
                                                 "original_max_position_embeddings": 32768}),
    "linear": ("qwen2", 512, 1000000.0, {"rope_type": "linear", "factor": 3.0}),
    "default_theta": ("qwen3", 512, 1000000.0, None),
}
"""name -> (architecture, max_position_embeddings, rope_theta, rope_scaling)."""
TOLERANCE = {"linear": 1e-6}
"""Logits are bit for bit HF's, except linear: Megatron-Core divides the positions where HF divides the
frequencies (the same angles up to float rounding)."""


def _hf_config(arch: str, max_positions: int):
    import transformers

    config_class = getattr(transformers, {"llama": "LlamaConfig", "mistral": "MistralConfig", "qwen2": "Qwen2Config",
                                          "qwen3": "Qwen3Config"}[arch])
    config = config_class(**TINY, head_dim=16, max_position_embeddings=max_positions)
    config.architectures = [config_class.__name__.replace("Config", "ForCausalLM")]
    return config


def _as_on_the_hub(folder: Path, rope_theta: float, rope_scaling: dict | None) -> None:
    """config.json with `rope_theta` and `rope_scaling` at the top level, as the hub's files have them."""
    config = json.loads((folder / "config.json").read_text())
    config.pop("rope_parameters", None)
    config["rope_theta"] = rope_theta
    if rope_scaling is not None:
        config["rope_scaling"] = rope_scaling
    (folder / "config.json").write_text(json.dumps(config, indent=2))


def _write_hf_model(folder: Path, arch: str, max_positions: int, rope_theta: float, rope_scaling: dict | None) -> Path:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(_hf_config(arch, max_positions), dtype=torch.float32).save_pretrained(folder)
    _as_on_the_hub(folder, rope_theta, rope_scaling)
    return folder


def _config_only(folder: Path, arch: str, rope_scaling: dict, max_positions: int = 512, **extra) -> Path:
    """A config.json (no weights): what the checks read."""
    config = _hf_config(arch, max_positions).to_dict()
    config.pop("rope_parameters", None)
    config.update(rope_theta=10000.0, rope_scaling=rope_scaling, **extra)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request, tmp_path_factory):
    arch, max_positions, rope_theta, rope_scaling = CASES[request.param]
    return request.param, _write_hf_model(tmp_path_factory.mktemp(request.param), arch, max_positions, rope_theta,
                                          rope_scaling)


def _engine_model(folder: Path):
    """The model as the engine builds it (provider_from_hf, local spec) with the HF weights, in float32."""
    from megatron.bridge import AutoBridge

    from primus_bridge.engine.megatron.model import provider_from_hf

    provider = provider_from_hf(folder, "local")
    provider.params_dtype, provider.bf16, provider.fp16 = torch.float32, False, False
    provider.finalize()
    models = provider.provide_distributed_model(wrap_with_ddp=False, use_cpu_initialization=True)
    AutoBridge.from_hf_pretrained(str(folder)).load_hf_weights(models)
    model = models[0]
    while hasattr(model, "module"):
        model = model.module
    return model.eval()


@pytest.fixture(scope="module")
def models(megatron_cpu, case):
    from transformers import AutoModelForCausalLM

    name, folder = case
    return name, AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval(), _engine_model(folder)


def test_logits_equal_hf_logits(models):
    name, hf, megatron = models
    tokens = torch.randint(0, TINY["vocab_size"], (ROWS, SEQ), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf(tokens).logits
        got = megatron(input_ids=tokens, position_ids=torch.arange(SEQ).expand(ROWS, -1), attention_mask=None)
    torch.testing.assert_close(got, expected, atol=TOLERANCE.get(name, 0.0), rtol=0, msg=name)


def test_packed_logits_equal_each_document_alone(models):
    """Training runs packed streams: RoPE restarts per document, the YaRN attention factor included."""
    from megatron.core.packed_seq_params import PackedSeqParams

    name, hf, megatron = models
    documents = [torch.randint(0, TINY["vocab_size"], (n,), generator=torch.Generator().manual_seed(n))
                 for n in DOCUMENTS]
    cu = torch.tensor([0, *torch.tensor(DOCUMENTS).cumsum(0).tolist()], dtype=torch.int32)
    params = PackedSeqParams(qkv_format="thd", cu_seqlens_q=cu, cu_seqlens_kv=cu, max_seqlen_q=max(DOCUMENTS),
                             max_seqlen_kv=max(DOCUMENTS))
    positions = torch.cat([torch.arange(n) for n in DOCUMENTS])[None]
    with torch.no_grad():
        got = megatron(input_ids=torch.cat(documents)[None], position_ids=positions, attention_mask=None,
                       packed_seq_params=params)[0]
        expected = torch.cat([hf(document[None]).logits[0] for document in documents])
    torch.testing.assert_close(got, expected, atol=TOLERANCE.get(name, 0.0), rtol=0, msg=name)


def test_llama3_case_needs_the_frequency_hook(tmp_path):
    """The sub-parameters case is one Megatron-Core alone builds differently; the defaults case is not."""
    from primus_bridge.engine.megatron.rope import llama3_hook_parameters, read_hf_rope

    for name, needs_hook in (("llama3_sub_parameters", True), ("llama3_megatron_defaults", False)):
        arch, max_positions, _, rope_scaling = CASES[name]
        rope = read_hf_rope(_config_only(tmp_path / name, arch, rope_scaling, max_positions))
        assert (llama3_hook_parameters(rope) is not None) == needs_hook, name


def test_yarn_provider_gets_hf_defaults(tmp_path):
    """Qwen2.5's YaRN names only factor and original_max_position_embeddings: HF's defaults fill in the rest."""
    from primus_bridge.engine.megatron.rope import megatron_rope_settings, read_hf_rope

    _, _, _, rope_scaling = CASES["yarn_qwen2.5"]
    settings = megatron_rope_settings(read_hf_rope(_config_only(tmp_path, "qwen2", rope_scaling, 32768)))
    assert settings["position_embedding_type"] == "yarn"
    assert (settings["yarn_beta_fast"], settings["yarn_beta_slow"], settings["yarn_correction_range_round_to_int"]) == (
        32, 1, True)
    assert (settings["yarn_rotary_scaling_factor"], settings["yarn_original_max_position_embeddings"]) == (4.0, 32768)
    assert (settings["yarn_mscale"], settings["yarn_mscale_all_dim"]) == (None, None)


@pytest.mark.parametrize(("rope_scaling", "shown"), [
    ({"rope_type": "dynamic", "factor": 2.0}, "rope_scaling.rope_type='dynamic'"),
    ({"type": "dynamic", "factor": 2.0}, "rope_scaling.type='dynamic'"),
    ({"rope_type": "longrope", "short_factor": [1.0] * 8, "long_factor": [2.0] * 8,
      "original_max_position_embeddings": 256}, "rope_scaling.rope_type='longrope'"),
])
def test_rope_types_megatron_core_lacks_are_refused(tmp_path, rope_scaling, shown):
    from primus_bridge.engine.megatron.rope import checked_hf_rope

    folder = _config_only(tmp_path, "llama", rope_scaling)
    with pytest.raises(ConfigError) as err:
        checked_hf_rope(folder)
    rope_type = rope_scaling.get("rope_type") or rope_scaling["type"]
    assert err.value.messages == [
        f"hf_model_name_or_path config.json: {shown} ({folder}): Megatron-Core has no {rope_type} RoPE (it has "
        "default, linear, llama3, yarn), so the model would train with positions other than its own; use engine: hf "
        "(transformers runs the model's own RoPE) or a model without it"]


def test_yarn_settings_megatron_core_cannot_take_are_refused(tmp_path):
    from primus_bridge.engine.megatron.rope import checked_hf_rope

    folder = _config_only(tmp_path, "qwen2", {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 128,
                                              "attention_factor": 1.5}, partial_rotary_factor=0.5)
    with pytest.raises(ConfigError) as err:
        checked_hf_rope(folder)
    assert [message.split(" (")[0] for message in err.value.messages] == [
        "hf_model_name_or_path config.json: rope_scaling.partial_rotary_factor=0.5",
        "hf_model_name_or_path config.json: rope_scaling.attention_factor=1.5"]
    assert "Megatron-Core's YaRN rotates the whole head" in err.value.messages[0]
    assert "derives YaRN's attention factor from factor, mscale and mscale_all_dim" in err.value.messages[1]


def test_yarn_attention_factor_equal_to_megatron_cores_is_accepted(tmp_path):
    """An explicit attention_factor equal to the derived one (0.1 ln(factor) + 1) changes nothing."""
    import math

    from primus_bridge.engine.megatron.rope import checked_hf_rope

    factor = 4.0
    folder = _config_only(tmp_path, "qwen2", {"type": "yarn", "factor": factor, "original_max_position_embeddings": 128,
                                              "attention_factor": 0.1 * math.log(factor) + 1.0})
    assert checked_hf_rope(folder).rope_type == "yarn"


def test_mistral_yarn_is_refused_before_megatron_bridge_fails_on_it(tmp_path):
    from primus_bridge.engine.megatron.rope import checked_hf_rope

    folder = _config_only(tmp_path, "mistral", {"rope_type": "yarn", "factor": 4.0,
                                                "original_max_position_embeddings": 128})
    with pytest.raises(ConfigError, match=r"rope_scaling.rope_type='yarn' .*Mistral bridge cannot build a YaRN model"):
        checked_hf_rope(folder)


def test_rope_parameters_per_layer_type_are_refused(tmp_path):
    from primus_bridge.engine.megatron.rope import checked_hf_rope

    folder = _config_only(tmp_path, "qwen3", None, layer_types=["full_attention", "full_attention"])
    config = json.loads((folder / "config.json").read_text())
    del config["rope_scaling"]
    config["rope_parameters"] = {"full_attention": {"rope_type": "default", "rope_theta": 10000.0}}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"rope_parameters \(.*\) holds RoPE parameters per layer type "
                                          r"\(full_attention\); Megatron-Core's GPT model has one RoPE"):
        checked_hf_rope(folder)
