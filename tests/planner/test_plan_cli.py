"""`primus-bridge plan`: the acceptance commands, user configs, and clear errors."""

import json
import shlex

import pytest

import recipes
from primus_bridge.cli.main import main as cli_main


@pytest.fixture(autouse=True)
def no_visible_gpu(monkeypatch):
    """Plans here name their GPU type; none is detected from the machine running the tests."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


def plan(capsys, *argv) -> tuple[int, str, str]:
    code = cli_main(["plan", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_llama3_70b_sft_fits_on_four_mi300x_nodes(capsys):
    code, out, _ = plan(capsys, "--recipe", "llama3_70b", "--mode", "sft", "--gpu", "mi300x", "--nodes", "4", "--json")
    result = json.loads(out)
    assert code == 0 and result["fits"] is True and result["problems"] == []
    parts = result["breakdown_gib"]
    assert set(parts) == {"weights", "gradients", "optimizer_states", "activations", "lora", "logits",
                          "optimizer_step_excess", "framework_overhead", "allocator_fragmentation"}
    assert sum(parts.values()) == pytest.approx(result["total_gib"], abs=0.05)
    assert result["headroom_gib"] == pytest.approx(result["gpu_memory_gib"] - result["total_gib"], abs=0.05)
    alt = result["alternatives_gib"]
    assert alt["optimizer_states"]["no_distributed_optimizer"] > alt["optimizer_states"]["distributed_optimizer"]
    assert alt["activations"]["full_recompute"] < alt["activations"]["no_recompute"]
    assert result["speed"]["mfu_assumed"] == 0.4 and result["speed"]["tokens_per_s_per_gpu"] > 0


def test_llama31_405b_sft_on_one_h100_node_does_not_fit_and_says_what_would(capsys):
    code, out, _ = plan(capsys, "--recipe", "llama31_405b", "--mode", "sft", "--gpu", "h100", "--nodes", "1")
    assert code == 1  # does not fit: a script can tell from the exit code
    assert "does not fit" in out and "to make it fit" in out and "--nodes" in out
    assert "weights" in out and "optimizer states" in out and "tokens/s/GPU" in out


def suggestions_of(capsys, argv) -> list[str]:
    code, out, _ = plan(capsys, *argv, "--json")
    result = json.loads(out)
    assert code == 1 and not result["fits"]
    return [s["flags"] for s in result["suggestions"]]


def test_every_suggestion_makes_the_plan_fit(capsys):
    """Apply each suggested set of flags to the same command: the new plan fits."""
    argv = ["--recipe", "llama3_8b", "--gpu", "h100", "--set", "parallelism.tensor_model_parallel_size=1",
            "--set", "parallelism.sequence_parallel=false", "--micro_batch_size", "2", "--global_batch_size", "64"]
    suggestions = suggestions_of(capsys, argv)
    assert suggestions and any("recompute_activations=true" in s for s in suggestions)
    for flags in suggestions:
        code, out, _ = plan(capsys, *argv, *shlex.split(flags), "--json")
        assert code == 0 and json.loads(out)["fits"], flags


def test_plans_a_users_own_config_with_a_local_model(tmp_path, capsys):
    model = tmp_path / "my-model"
    recipes.recipe("qwen3_8b").shape.hf_config().save_pretrained(model)
    config = tmp_path / "c.yaml"
    config.write_text(f"hf_model_name_or_path: {model}\ntraining: {{global_batch_size: 64}}\n"
                      "data: {seq_length: 2048}\n")
    code, out, _ = plan(capsys, "--config", str(config), "--gpu", "h200", "--nodes", "2", "--json")
    result = json.loads(out)
    assert code == 0 and result["model"] == "my-model" and result["world_size"] == 16
    assert result["params_billion"] == pytest.approx(8.19, abs=0.01) and result["layout"]["seq_length"] == 2048


def test_mode_lora_plans_adapters(capsys):
    code, out, _ = plan(capsys, "--recipe", "qwen25_14b", "--mode", "lora", "--gpu", "b200", "--json")
    result = json.loads(out)
    assert result["mode"] == "lora" and result["breakdown_gib"]["lora"] > 0
    assert result["breakdown_gib"]["optimizer_states"] == 0 and result["layout"]["lora_rank"] == 16


@pytest.mark.parametrize("argv,expected", [
    (["--recipe", "llama3_8b"], "--gpu"),
    (["--gpu", "h100"], "shape is unknown"),
    (["--recipe", "llama3_8b", "--gpu", "h100", "--nodes", "0"], "--nodes: got 0"),
    (["--recipe", "llama3_8b", "--gpu", "h100", "--mfu", "40"], "--mfu"),
])
def test_errors_exit_2_and_name_the_fix(capsys, argv, expected):
    code, _, err = plan(capsys, *argv)
    assert code == 2 and expected in err and "Traceback" not in err


@pytest.mark.parametrize("engine, logits_note", [("auto", "chunked head loss"), ("megatron", "chunked head loss"),
                                                 ("hf", "bf16 logits + fp32 softmax")])
def test_a_lora_plan_counts_the_head_loss_the_engine_will_run(capsys, engine, logits_note):
    """Under head_loss auto a LoRA run at TP 1 on the megatron engine (engine: auto's choice on GPUs) keeps the logits
    of one 1,024-token chunk: the plan says so and counts that, not the whole micro batch's."""
    argv = ["--recipe", "llama3_8b", "--mode", "lora", "--gpu", "h100", "--nodes", "1", "--gpus_per_node", "1",
            "--seq_length", "4096", "--micro_batch_size", "1", "--engine", engine]
    _, text, _ = plan(capsys, *argv)
    _, out, _ = plan(capsys, *argv, "--json")
    logits_line = next(line for line in text.splitlines() if line.strip().startswith("logits"))
    assert logits_note in logits_line
    chunked = logits_note.startswith("chunked")
    assert (json.loads(out)["breakdown_gib"]["logits"] < 2) == chunked  # 128,256 x 4,096 x 10 B is 4.9 GiB
