"""Every shipped recipe on every GPU type and mode: loads, is consistent, and fits with headroom."""

import argparse
from dataclasses import replace

import pytest

import recipes
from primus_bridge.config import ConfigError, add_config_arguments, load_config_with_origins
from primus_bridge.hardware import GPU_TYPES
from primus_bridge.planner import plan_config
from primus_bridge.models.shape import ModelShape

REQUIRED = ["llama3_8b", "llama3_70b", "llama31_8b", "llama31_70b", "llama31_405b", "llama32_1b", "llama32_3b",
            "qwen25_7b", "qwen25_14b", "qwen25_32b", "qwen25_72b", "qwen3_8b", "qwen3_32b", "mistral_7b", "tiny"]
CASES = [(name, mode, gpu) for name in recipes.available() for mode in ("sft", "lora") for gpu in GPU_TYPES]


def load(argv, world_size=None):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return load_config_with_origins(parser.parse_args(argv), world_size)


def recipe_argv(name, mode, gpu):
    return ["--recipe", name, "--gpu", gpu, *(["--use_lora"] if mode == "lora" else [])]


def test_every_required_recipe_ships():
    assert set(REQUIRED) <= set(recipes.available())


@pytest.mark.parametrize("name,mode,gpu", CASES)
def test_recipe_is_consistent_at_its_node_counts(name, mode, gpu):
    recipe = recipes.recipe(name)
    tuning, shape = recipe.tuning(mode, gpu), recipe.shape
    assert shape.num_attention_heads % tuning.tp == 0 and shape.num_query_groups % tuning.tp == 0
    assert shape.num_layers % (tuning.pp * (tuning.vpp or 1)) == 0
    for nodes in (tuning.nodes, 2 * tuning.nodes):
        cfg, origins = load(recipe_argv(name, mode, gpu), world_size=8 * nodes)  # the config's own checks pass
        dp = 8 * nodes // (tuning.tp * tuning.pp * tuning.cp)
        assert cfg.training.global_batch_size % (cfg.training.micro_batch_size * dp) == 0
        assert cfg.parallelism.tensor_model_parallel_size == tuning.tp
        assert origins["parallelism.tensor_model_parallel_size"].startswith("recipe")


@pytest.mark.parametrize("name,mode,gpu", CASES)
def test_recipe_fits_with_ten_percent_headroom(name, mode, gpu):
    tuning = recipes.recipe(name).tuning(mode, gpu)
    cfg, _ = load(recipe_argv(name, mode, gpu))
    plan = plan_config(cfg, world_size=8 * tuning.nodes, gpus_per_node=8, gpu=gpu)
    assert plan.fits, (plan.problems, plan.memory.total / 2**30)
    assert plan.headroom_fraction >= 0.10, f"{plan.headroom_fraction:.1%} headroom"


@pytest.mark.parametrize("name", recipes.available())
def test_parameter_count_matches_transformers(name):
    """The planner's parameter formula against the real HF model class (2 layers, on the meta device)."""
    import torch
    from transformers import AutoModelForCausalLM

    shape = replace(recipes.recipe(name).shape, num_layers=2)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(shape.hf_config())
    assert sum(p.numel() for p in model.parameters()) == shape.total_params()


@pytest.mark.parametrize("name", recipes.available())
def test_shape_round_trips_through_hf_config(name):
    shape = recipes.recipe(name).shape
    assert ModelShape.from_hf_config(shape.hf_config().to_dict(), hf_id=shape.hf_id) == shape


def test_no_gpu_names_the_flag_and_the_types():
    with pytest.raises(ConfigError) as info:
        load(["--recipe", "llama3_70b"])
    (message,) = info.value.messages
    assert "--gpu" in message and all(gpu in message for gpu in GPU_TYPES)


def test_tiny_needs_no_gpu_and_matches_the_demo_builder(repo):
    from tokenizers import Tokenizer

    from primus_bridge.models.tiny import TinyLlamaSpec

    cfg, _ = load(["--recipe", "tiny"])
    spec, shape = TinyLlamaSpec(), recipes.recipe("tiny").shape
    assert (shape.hidden_size, shape.num_layers, shape.ffn_hidden_size) == \
        (spec.hidden_size, spec.num_hidden_layers, spec.intermediate_size)
    assert cfg.model.num_attention_heads == spec.num_attention_heads \
        and cfg.data.seq_length <= spec.max_position_embeddings
    tokenizer = Tokenizer.from_file(str(repo / "examples" / "tokenizer" / "tokenizer.json"))
    assert shape.vocab_size >= tokenizer.get_vocab_size()


@pytest.mark.parametrize("bad,expected", [("gpu", "not a known GPU type"), ("recipe", "not found")])
def test_unknown_gpu_or_recipe(bad, expected):
    argv = ["--recipe", "nope" if bad == "recipe" else "llama3_8b", "--gpu", "a100" if bad == "gpu" else "h100"]
    with pytest.raises(ConfigError) as info:
        load(argv)
    assert expected in info.value.messages[0]


def test_users_keys_override_the_recipe(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("recipe: llama3_8b\ntraining: {lr: 3.0e-6}\nparallelism: {tensor_model_parallel_size: 4}\n")
    cfg, origins = load(["--config", str(path), "--gpu", "h100", "--seq_length", "2048"])
    assert cfg.training.lr == 3e-6 and cfg.parallelism.tensor_model_parallel_size == 4 and cfg.data.seq_length == 2048
    assert origins["training.lr"] == f"{path}:2" and origins["data.seq_length"] == "cli --seq_length"
    assert origins["training.global_batch_size"].startswith("recipe llama3_8b (sft, h100)")
    assert cfg.hf_model_name_or_path == "meta-llama/Meta-Llama-3-8B"


def test_lora_keys_only_in_lora_mode():
    assert "lora" not in recipes.config_layer("qwen25_7b", "sft", "mi300x")
    cfg, _ = load(recipe_argv("qwen25_7b", "lora", "mi300x"))
    assert cfg.lora.use_lora and cfg.lora.lora_rank == 16 and cfg.lora.lora_alpha == 32
    assert "down_proj" in cfg.lora.lora_target_modules and cfg.training.lr == 2e-4


def test_learning_rates_follow_the_guidance():
    for name in recipes.available():
        if name == "tiny":
            continue
        sft, lora = recipes.config_layer(name, "sft", "h200"), recipes.config_layer(name, "lora", "h200")
        assert 5e-6 <= sft["training"]["lr"] <= 1e-5 and 1e-4 <= lora["training"]["lr"] <= 3e-4
        assert 64 <= sft["training"]["global_batch_size"] <= 128 and 32 <= lora["training"]["global_batch_size"] <= 64


def test_each_recipe_states_its_parallelism():
    for name in recipes.available():
        doc = recipes.load(name).__doc__ or ""
        assert "TP" in doc or "one process" in doc, name
