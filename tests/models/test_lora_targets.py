"""The one LoRA target map: HF projection names, their Megatron names, and what a typo gets told."""

import pytest

from primus_bridge.models.lora import ADAPTER_NAMES, FUSED_LAYERS, LAYER_PROJECTIONS, PROJECTIONS, target_errors


def test_every_projection_has_an_adapter_and_a_fused_layer():
    assert set(ADAPTER_NAMES) == set(FUSED_LAYERS) == set(PROJECTIONS)
    assert LAYER_PROJECTIONS == {"linear_qkv": ("q_proj", "k_proj", "v_proj"), "linear_proj": ("o_proj",),
                                 "linear_fc1": ("gate_proj", "up_proj"), "linear_fc2": ("down_proj",)}


def test_valid_targets_have_no_errors():
    assert target_errors(list(PROJECTIONS)) == [] and target_errors(["v_proj", "q_proj"]) == []


@pytest.mark.parametrize(("name", "hint"), [
    ("q_porj", "did you mean q_proj?"),
    ("gate", "did you mean gate_proj?"),
    ("linear_q", "did you mean q_proj?"),
    ("linear_qkv", "did you mean q_proj, k_proj, v_proj?"),
])
def test_a_typo_names_the_key_and_the_nearest_projection(name, hint):
    [message] = target_errors(["q_proj", name])
    assert message.startswith(f"lora.lora_target_modules: unknown module name {name!r}; {hint}")
    assert message.endswith("valid names: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj")


def test_nothing_close_and_empty():
    [message] = target_errors(["query_key_value"])
    assert "did you mean" not in message and "'query_key_value'" in message
    assert target_errors([]) == ["lora.lora_target_modules: empty; list some of q_proj, k_proj, v_proj, o_proj, "
                                 "gate_proj, up_proj, down_proj"]
