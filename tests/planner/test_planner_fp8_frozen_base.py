"""The planner with precision.fp8_frozen_base: the layers' linear weights at 1 byte a parameter (+ scales and one
re-laid-out layer), the rest of the base at 2, and the bf16 load checked against the GPU."""

from dataclasses import replace

import recipes
from primus_bridge.config import PrimusConfig
from primus_bridge.hardware import GIB, GPU_TYPES
from primus_bridge.models.lora import LoraSpec
from primus_bridge.planner.layout import Layout, layout_from_config
from primus_bridge.planner.memory import stage_memory
from primus_bridge.planner.plan import make_plan

LLAMA8B = recipes.recipe("llama3_8b").shape
LLAMA70B = recipes.recipe("llama3_70b").shape
LORA = Layout(world_size=1, gpus_per_node=1, seq_length=4096,
              lora=LoraSpec(rank=16, targets=frozenset({"q_proj", "v_proj"}), dropout=0.0))


def test_base_linears_cost_one_byte_per_parameter():
    h, f, kv, layers = 4096, 14336, 1024, 32
    linears = layers * (h * h + 2 * h * kv + h * h + 3 * h * f)  # q, k, v, o, gate, up, down
    rows = layers * (h + 2 * kv + h + 2 * f + h)
    fc1 = 2 * h * f  # the largest layer, re-laid out during its backward
    bf16 = stage_memory(LLAMA8B, LORA, 0)
    fp8 = stage_memory(LLAMA8B, replace(LORA, fp8_frozen_base=True), 0)
    assert bf16.weights == 2 * LLAMA8B.total_params()
    assert fp8.weights == bf16.weights - linears + 4 * rows + fc1
    assert fp8.lora == bf16.lora and fp8.activations == bf16.activations
    assert 8.5 < fp8.weights / GIB < 8.6 and 14.9 < bf16.weights / GIB < 15.0


def test_config_turns_it_on_for_lora_only():
    on = PrimusConfig.model_validate({"lora": {"use_lora": True}, "precision": {"fp8_frozen_base": True}})
    assert layout_from_config(on, 1, 8).fp8_frozen_base
    assert not layout_from_config(PrimusConfig(), 1, 8).fp8_frozen_base


def test_the_bf16_load_must_fit_too():
    """70B at TP 1 would train in FP8 on one H200 but does not load there in bf16 first: the plan says so."""
    fp8 = replace(LORA, fp8_frozen_base=True)
    plan = make_plan(LLAMA70B, fp8, GPU_TYPES["h200"])
    assert any(p.startswith("precision.fp8_frozen_base: the model loads in bf16") for p in plan.problems)
    assert not plan.fits
    assert make_plan(LLAMA8B, fp8, GPU_TYPES["h100"]).problems == []
    assert make_plan(LLAMA70B, LORA, GPU_TYPES["h200"]).problems == []
