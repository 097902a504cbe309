"""The planner's formulas against hand-computed numbers and against each other."""

from dataclasses import replace

import pytest

import recipes
from primus_bridge.planner.activations import (
    in_flight_chunks,
    layer_bytes_per_token,
    logits_bytes,
    stage_activation_bytes,
)
from primus_bridge.hardware import GPU_TYPES
from primus_bridge.models.lora import LoraSpec
from primus_bridge.planner.layout import Layout
from primus_bridge.planner.memory import FRAGMENTATION, stage_memory
from primus_bridge.planner.plan import make_plan
from primus_bridge.planner.params import base_params_on_gpu

LLAMA8B = recipes.recipe("llama3_8b").shape
LLAMA70B = recipes.recipe("llama3_70b").shape
ONE_NODE = Layout(world_size=8, gpus_per_node=8, seq_length=4096, recompute_mlp_activation=False)
"""The paper's setting: every activation kept."""


def test_every_gpu_type_has_memory_and_a_peak():
    for gpu in GPU_TYPES.values():
        assert 0.9 * gpu.memory_gb < gpu.memory_gib <= gpu.memory_gb and gpu.bf16_tflops > 900


def test_full_fine_tuning_bytes_per_parameter():
    params = LLAMA8B.total_params()
    sharded = stage_memory(LLAMA8B, ONE_NODE, 0)
    assert sharded.weights == 2 * params and sharded.gradients == 4 * params
    assert sharded.optimizer_states == pytest.approx(12 * params / 8)
    whole = stage_memory(LLAMA8B, replace(ONE_NODE, distributed_optimizer=False), 0)
    assert whole.optimizer_states == 12 * params


def test_lora_freezes_the_base():
    lora = replace(ONE_NODE, lora=LoraSpec(rank=16, targets=frozenset({"q_proj", "k_proj", "v_proj"}), dropout=0.0))
    memory = stage_memory(LLAMA8B, lora, 0)
    assert memory.weights == 2 * LLAMA8B.total_params() and memory.gradients == memory.optimizer_states == 0
    adapters = 32 * 16 * ((4096 + 4096) + 2 * (4096 + 1024))  # an adapter per projection: r x (in + out)
    assert memory.lora == pytest.approx(adapters * (2 + 4 + 12 / 8))


ALL_TARGETS = frozenset({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"})


def test_lora_adapters_are_peft_s():
    """Llama-3-8B r16 on every projection: 41.9M adapter parameters, as PEFT and the FLOP count have (35.7M with
    the one-adapter-per-fused-layer layout of earlier runs); tensor parallelism splits both of their matrices."""
    from primus_bridge.models import flops
    from primus_bridge.planner.params import lora_params_on_gpu

    lora = LoraSpec(rank=16, targets=ALL_TARGETS, dropout=0.0)
    assert lora_params_on_gpu(LLAMA8B, replace(ONE_NODE, lora=lora)) == 41_943_040
    assert flops.lora_params(LLAMA8B, lora) == 41_943_040
    assert lora_params_on_gpu(LLAMA8B, replace(ONE_NODE, lora=replace(lora, layout="fused"))) == 35_651_584
    assert lora_params_on_gpu(LLAMA8B, replace(ONE_NODE, tp=2, lora=lora)) == 41_943_040 / 2
    subset = replace(lora, targets=frozenset({"q_proj", "v_proj"}))
    assert lora_params_on_gpu(LLAMA8B, replace(ONE_NODE, lora=subset)) == 32 * 16 * ((4096 + 4096) + (4096 + 1024))


def test_lora_dropout_keeps_one_mask_per_adapter():
    """Per token and layer with dropout: the grouped fast path keeps the QKV/FC1 input once plus a mask per
    adapter (2 + n bytes); elsewhere each adapter keeps a dropped-out copy and its mask (3 bytes each)."""
    h, f = 4096, 14336
    lora = LoraSpec(rank=16, targets=ALL_TARGETS, dropout=0.1)
    without = layer_bytes_per_token(LLAMA8B, replace(ONE_NODE, lora=replace(lora, dropout=0.0)))
    grouped = layer_bytes_per_token(LLAMA8B, replace(ONE_NODE, lora=lora))
    assert grouped - without == (2 + 3 - 2) * h + 3 * h + (2 + 2 - 2) * h + (3 - 2) * f  # qkv, proj, fc1, fc2
    fused = layer_bytes_per_token(LLAMA8B, replace(ONE_NODE, lora=replace(lora, layout="fused")))
    assert fused - without == (3 - 2) * h + 3 * h + (3 - 2) * h + (3 - 2) * f
    tp2 = replace(ONE_NODE, tp=2)
    separate = layer_bytes_per_token(LLAMA8B, replace(tp2, lora=lora))
    no_dropout = layer_bytes_per_token(LLAMA8B, replace(tp2, lora=replace(lora, dropout=0.0)))
    assert separate - no_dropout == (9 - 2) * h + 3 * h / 2 + (6 - 2) * h + (3 - 2) * f / 2


def test_activations_are_34sbh_for_llama3_8b():
    """Korthikanti's 34 bytes x hidden per token and layer (no dropout, flash attention)."""
    stats = 4 * 32
    assert layer_bytes_per_token(LLAMA8B, ONE_NODE) == 34 * 4096 + stats


def test_recomputing_the_swiglu_output_drops_fc2s_input():
    """2f bytes (f = 3.5h) less per token and layer, for full fine-tuning and LoRA without dropout alike."""
    recomputed = replace(ONE_NODE, recompute_mlp_activation=True)
    assert layer_bytes_per_token(LLAMA8B, recomputed) == 27 * 4096 + 4 * 32
    lora = LoraSpec(rank=16, targets=frozenset({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                "down_proj"}), dropout=0.0)
    saved = layer_bytes_per_token(LLAMA8B, replace(ONE_NODE, lora=lora)) - \
        layer_bytes_per_token(LLAMA8B, replace(recomputed, lora=lora))
    assert saved == 2 * 14336
    with_dropout = replace(lora, dropout=0.1)  # the adapter keeps a dropped-out copy instead: nothing saved
    assert layer_bytes_per_token(LLAMA8B, replace(ONE_NODE, lora=with_dropout)) == \
        layer_bytes_per_token(LLAMA8B, replace(recomputed, lora=with_dropout))


def test_chunked_head_keeps_one_chunk_of_logits_where_the_engine_uses_it():
    """Chunked: vocab-wide tensors for 1,024 tokens, not 4,096; under auto only for 16,384+ entries, as the engine."""
    lora = replace(ONE_NODE, lora=LoraSpec(rank=16, targets=frozenset({"q_proj"}), dropout=0.0))
    full, chunked = logits_bytes(LLAMA8B, lora), logits_bytes(LLAMA8B, replace(lora, head_loss="chunked"))
    assert full - chunked == pytest.approx(10 * 128256 * 4096 - 4 * 128256 * 1024 - 2 * 4096 * 4096)
    auto = replace(lora, head_loss="chunked", head_loss_min_vocab=16384)
    assert logits_bytes(LLAMA8B, auto) == chunked
    small = replace(LLAMA8B, vocab_size=1685)
    asked_for = replace(auto, head_loss_min_vocab=0)  # head_loss: chunked, whatever the vocabulary
    assert logits_bytes(small, auto) == logits_bytes(small, lora) != logits_bytes(small, asked_for)


def test_tensor_and_sequence_parallel_split_activations():
    tp2 = replace(ONE_NODE, tp=2)
    sp = replace(tp2, sequence_parallel=True)
    full = layer_bytes_per_token(LLAMA8B, ONE_NODE)
    assert layer_bytes_per_token(LLAMA8B, sp) == pytest.approx(full / 2)
    assert layer_bytes_per_token(LLAMA8B, tp2) == pytest.approx(full / 2 + 8 * 4096 / 2)  # norm region replicated


def test_context_parallel_and_recompute_shrink_activations():
    base = stage_activation_bytes(LLAMA8B, ONE_NODE, 0)
    assert stage_activation_bytes(LLAMA8B, replace(ONE_NODE, cp=2), 0) == pytest.approx(base / 2)
    recomputed = stage_activation_bytes(LLAMA8B, replace(ONE_NODE, recompute="full"), 0)
    per_token = 32 * 2 * 4096 + layer_bytes_per_token(LLAMA8B, ONE_NODE)  # layer inputs + one layer's working set
    assert recomputed == pytest.approx(per_token * 4096)
    assert recomputed < base / 10


def test_pipeline_first_stage_holds_pp_micro_batches():
    pp4 = replace(ONE_NODE, pp=4, global_batch=64)
    assert [in_flight_chunks(pp4, s) for s in range(4)] == [4, 3, 2, 1]
    assert in_flight_chunks(replace(pp4, global_batch=4), 0) == 2  # DP 2: 2 micro batches per step
    interleaved = replace(pp4, vpp=2)
    chunks, layers_per_chunk = in_flight_chunks(interleaved, 0), 32 / 8
    assert chunks * layers_per_chunk == pytest.approx(32 * (1 + 3 / (4 * 2)))  # Korthikanti's (1 + (p-1)/(pv)) L


def test_embedding_and_logits_sit_on_the_end_stages():
    pp2 = replace(ONE_NODE, pp=2)
    first, last = stage_memory(LLAMA70B, pp2, 0), stage_memory(LLAMA70B, pp2, 1)
    assert first.logits == 0 and last.logits > 0
    assert base_params_on_gpu(LLAMA70B, pp2, 0) == pytest.approx(base_params_on_gpu(LLAMA70B, pp2, 1) - 8192)
    tied = recipes.recipe("llama32_1b").shape
    one = base_params_on_gpu(tied, ONE_NODE, 0)
    assert one == tied.total_params()  # tied embedding counted once without PP
    split = base_params_on_gpu(tied, pp2, 0) + base_params_on_gpu(tied, pp2, 1)
    assert split == one + tied.embedding_params()  # the last stage keeps its own copy with PP


def test_total_adds_overhead_and_fragmentation():
    memory = stage_memory(LLAMA8B, ONE_NODE, 0)
    assert memory.allocator_fragmentation == pytest.approx(FRAGMENTATION * memory.tensors)
    assert memory.total == pytest.approx(memory.tensors * (1 + FRAGMENTATION) + memory.framework_overhead)


def test_plan_flags_layouts_that_cannot_run():
    bad = replace(ONE_NODE, tp=3, pp=3, world_size=8, global_batch=100, micro_batch=3)
    problems = " ".join(make_plan(LLAMA8B, bad, GPU_TYPES["h100"]).problems)
    assert "does not divide the 8 GPUs" in problems and "does not divide the 32 attention heads" in problems
    assert "does not divide the 32 layers" in problems
    odd_batch = make_plan(LLAMA8B, replace(ONE_NODE, global_batch=100), GPU_TYPES["h200"])
    assert not odd_batch.fits and "global_batch_size: 100" in odd_batch.problems[0]


def test_speed_scales_with_gpus_and_recompute():
    plan = make_plan(LLAMA8B, ONE_NODE, GPU_TYPES["h200"])
    twice = make_plan(LLAMA8B, replace(ONE_NODE, world_size=16), GPU_TYPES["h200"])
    assert twice.speed.step_time_s == pytest.approx(plan.speed.step_time_s / 2)
    assert twice.speed.tokens_per_s_per_gpu == pytest.approx(plan.speed.tokens_per_s_per_gpu)
    slower = make_plan(LLAMA8B, replace(ONE_NODE, recompute="full"), GPU_TYPES["h200"])
    assert 1.25 < slower.speed.step_time_s / plan.speed.step_time_s < 1.4  # one extra forward of three passes
    tokens = 128 * 4096
    flops = plan.speed.model_flops_per_token * tokens / plan.speed.step_time_s / 8
    assert flops == pytest.approx(0.40 * 989.4e12)
