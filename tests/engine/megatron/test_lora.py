"""The contract's HF module names map exactly onto Megatron-Bridge's LoRA targets."""

import pytest

from primus_bridge.config import ConfigError
from primus_bridge.config.sections.lora import LoraConfig
from primus_bridge.engine.megatron.lora import map_targets


@pytest.mark.parametrize("names, canonical, expected", [
    (["q_proj", "k_proj", "v_proj", "o_proj"], False, ("linear_qkv", "linear_proj")),
    (["v_proj", "q_proj", "k_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], False,
     ("linear_qkv", "linear_proj", "linear_fc1", "linear_fc2")),
    (["q_proj", "v_proj"], True, ("linear_q", "linear_v")),
    (["q_proj", "k_proj", "v_proj", "up_proj"], True, ("linear_q", "linear_k", "linear_v", "linear_fc1_up")),
    (["gate_proj", "down_proj"], True, ("linear_fc1_gate", "linear_fc2")),
    (["o_proj", "down_proj"], False, ("linear_proj", "linear_fc2")),
])
def test_mapping(names, canonical, expected):
    targets = map_targets(names)
    assert targets.canonical is canonical
    assert targets.megatron_modules == expected


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ConfigError) as err:
        map_targets(["q_proj", "query_key_value"])
    message = str(err.value)
    assert "'query_key_value'" in message and "lora.lora_target_modules" in message
    assert "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj" in message


def test_peft_objects_carry_rank_alpha_dropout(megatron_cpu):
    from megatron.bridge.peft.canonical_lora import CanonicalLoRA
    from megatron.bridge.peft.lora import LoRA

    from primus_bridge.engine.megatron.lora import build_peft

    fused = build_peft(LoraConfig(use_lora=True, lora_rank=4, lora_alpha=8, lora_dropout=0.0))
    assert type(fused) is LoRA and (fused.dim, fused.alpha, fused.dropout) == (4, 8, 0.0)
    split = build_peft(LoraConfig(use_lora=True, lora_target_modules=["q_proj", "v_proj"]))
    assert type(split) is CanonicalLoRA and split.target_modules == ["linear_q", "linear_v"]


def test_lora_adapts_exactly_the_mapped_layers(megatron_cpu, tokenizer_dir, tmp_path):
    """Applied to a real model: adapters on the mapped layers only, base weights frozen."""
    from megatron.bridge import AutoBridge

    from primus_bridge.engine.megatron.layer_spec import use_local_spec
    from primus_bridge.engine.megatron.lora import build_peft
    from primus_bridge.models.tiny import build_tiny_llama

    hf = build_tiny_llama(tokenizer_dir, tmp_path / "tiny")
    provider = AutoBridge.from_hf_pretrained(str(hf)).to_megatron_provider(load_weights=False)
    use_local_spec(provider)
    provider.finalize()
    model = provider.provide_distributed_model(wrap_with_ddp=False, use_cpu_initialization=True)
    peft = build_peft(LoraConfig(use_lora=True, lora_rank=4, lora_target_modules=["o_proj", "down_proj"]))
    model = peft(model, training=True)
    trainable = {name for name, p in model[0].named_parameters() if p.requires_grad}
    assert trainable and all(".adapter." in name for name in trainable)
    adapted = {name.split(".adapter.")[0].rsplit(".", 1)[-1] for name in trainable}
    assert adapted == {"linear_proj", "linear_fc2"}
