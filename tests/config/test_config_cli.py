"""The user contract's YAML + flags: every flag works, every error class is clear and exits 2."""

import argparse
import subprocess
import sys

import pytest
import yaml

from pydantic import ValidationError

from primus_bridge.config import ConfigError, PrimusConfig, add_config_arguments, load_config_with_origins
from primus_bridge.config.flags import CONTRACT_FLAGS
from primus_bridge.cli.main import main as cli_main

SFT = "examples/configs/megatron_bridge/llama_sft_posttrain.yaml"
LORA = "examples/configs/megatron_bridge/llama_lora_posttrain.yaml"


def load(argv, world_size=None):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return load_config_with_origins(parser.parse_args(argv), world_size)


def errors_of(argv, world_size=None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(argv, world_size)
    return info.value.messages


def write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_contract_examples_load_unchanged(repo, monkeypatch):
    monkeypatch.chdir(repo)
    sft, _ = load(["--config", SFT])
    assert sft.parallelism.tensor_model_parallel_size == 2 and sft.data.prompt_template == "alpaca"
    lora, _ = load(["--config", LORA])
    assert lora.lora.use_lora and lora.lora.lora_target_modules == ["q_proj", "v_proj", "k_proj", "o_proj"]
    assert lora.checkpointing.save_lora_only and lora.convert_from_hf


def test_every_contract_flag_sets_its_key(repo, monkeypatch):
    monkeypatch.chdir(repo)
    argv = ["--config", LORA, "--framework", "megatron_bridge", "--load", "/ck", "--data_path", "/d",
            "--convert_from_hf", "--hf_model_name_or_path", "/hf", "--lr", "1e-4", "--train_iters", "7",
            "--use_lora", "--lora_rank", "8", "--lora_alpha", "16", "--dataset_format", "sharegpt",
            "--prompt_template", "chatml", "--chat_format", "chatml", "--micro_batch_size", "4",
            "--clip_grad", "0.5", "--lr_warmup_iters", "3", "--convert_to_hf", "--hf_save_path", "/out"]
    cfg, origins = load(argv)
    assert (cfg.model.load, cfg.data.data_path, cfg.hf_model_name_or_path) == ("/ck", "/d", "/hf")
    assert (cfg.training.lr, cfg.training.train_iters, cfg.training.micro_batch_size) == (1e-4, 7, 4)
    assert (cfg.lora.lora_rank, cfg.lora.lora_alpha) == (8, 16)
    assert (cfg.data.dataset_format, cfg.data.prompt_template, cfg.data.chat_format) == ("sharegpt", "chatml", "chatml")
    assert (cfg.training.clip_grad, cfg.training.lr_warmup_iters) == (0.5, 3)
    assert cfg.convert_to_hf and cfg.hf_save_path == "/out"
    assert origins["training.lr"] == "cli --lr"
    assert len(CONTRACT_FLAGS) + 1 == 19  # with --config: the contract names 19 flags


def test_help_lists_all_contract_flags_with_yaml_keys():
    out = subprocess.run([sys.executable, "-m", "primus_bridge.train", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    for flag, dotted, _ in CONTRACT_FLAGS:
        assert flag in text and f"yaml: {dotted};" in text, flag
    assert "--config" in text


def test_print_config_cli_override(repo, monkeypatch, capsys):
    monkeypatch.chdir(repo)
    assert cli_main(["print-config", "--config", LORA, "--lora_rank", "8"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["lora"]["lora_rank"] == 8


def test_print_config_explain_names_sources(repo, monkeypatch, capsys):
    monkeypatch.chdir(repo)
    assert cli_main(["print-config", "--config", SFT, "--explain", "--lr", "1e-5"]) == 0
    out = capsys.readouterr().out
    assert "lr: 1.0e-05    # cli --lr" in out
    assert f"micro_batch_size: 1    # {SFT}:9" in out
    assert "weight_decay: 0.0    # default" in out


def test_precedence_cli_over_yaml_over_extends(tmp_path, monkeypatch):
    write(tmp_path, "training: {lr: 1.0e-5, train_iters: 10}\ndata: {seq_length: 512}\n", "base.yaml")
    child = write(tmp_path, "extends: base.yaml\ntraining: {lr: 2.0e-5}\n", "child.yaml")
    monkeypatch.chdir("/")  # extends resolves from the including file, not the cwd
    cfg, origins = load(["--config", child, "--train_iters", "99"])
    assert (cfg.training.lr, cfg.training.train_iters, cfg.data.seq_length) == (2e-5, 99, 512)
    assert origins["data.seq_length"].endswith("base.yaml:2")


def test_env_interpolation_with_type_and_default(tmp_path, monkeypatch):
    path = write(tmp_path, "training: {train_iters: '${ITERS:5}', lr: '${LR}'}\ndata: {data_path: '${D:/x}/f.jsonl'}\n")
    monkeypatch.setenv("LR", "3e-5")
    cfg, _ = load(["--config", path])
    assert cfg.training.train_iters == 5 and cfg.training.lr == 3e-5 and cfg.data.data_path == "/x/f.jsonl"
    monkeypatch.delenv("LR")
    assert "LR is not set" in errors_of(["--config", path])[0]


def test_unknown_key_suggests_nearest(tmp_path):
    path = write(tmp_path, "training:\n  lr_warmup_iter: 100\n")
    (message,) = errors_of(["--config", path])
    assert message == f"{path}:2: training.lr_warmup_iter: unknown key, did you mean training.lr_warmup_iters?"


def test_wrong_type_and_range_name_key_value_expected(tmp_path):
    path = write(tmp_path, "training: {lr: fast, micro_batch_size: 0}\n")
    messages = errors_of(["--config", path])
    assert any("training.lr: got 'fast'" in m and "valid number" in m for m in messages)
    assert any("training.micro_batch_size: got 0" in m and "greater than or equal to 1" in m for m in messages)


def test_global_batch_divisible_by_micro_times_dp(tmp_path):
    path = write(tmp_path, "training: {micro_batch_size: 2, global_batch_size: 12}\n")
    load(["--config", path])  # dp 1: fine
    (message,) = errors_of(["--config", path], world_size=4)
    assert "global_batch_size: 12 is not divisible" in message and "multiple of 8" in message


def test_tp_must_divide_heads_and_kv_groups(tmp_path):
    path = write(tmp_path, "model: {num_attention_heads: 32, num_query_groups: 8}\n"
                           "parallelism: {tensor_model_parallel_size: 3}\n")
    messages = errors_of(["--config", path], world_size=3)
    assert any("does not divide the model's 32 attention heads" in m for m in messages)
    assert any("8 KV groups" in m for m in messages)


def test_tp_checked_against_local_hf_config(tmp_path):
    model = tmp_path / "hf"
    model.mkdir()
    (model / "config.json").write_text('{"num_attention_heads": 6, "num_key_value_heads": 2, '
                                       '"max_position_embeddings": 256, "vocab_size": 1001}')
    messages = errors_of(["--hf_model_name_or_path", str(model), "--set", "parallelism.tensor_model_parallel_size=4",
                          "--seq_length", "512"], world_size=4)
    assert any("6 attention heads" in m for m in messages)
    assert any("1001 vocabulary entries" in m for m in messages)
    assert any("beyond the model's 256 positions" in m for m in messages)


def test_sequence_parallel_stream_is_checked_at_load(tmp_path):
    path = write(tmp_path, "parallelism: {tensor_model_parallel_size: 4, sequence_parallel: true}\n"
                           "data: {seq_length: 510}\n")
    (message,) = errors_of(["--config", path], world_size=4)
    assert "510 = 510 tokens) over the 4 TP ranks" in message and message.startswith("data.seq_length")


def test_lora_target_typo_is_refused_at_load_with_the_nearest_name(tmp_path):
    path = write(tmp_path, "lora:\n  use_lora: true\n  lora_target_modules: [q_proj, v_porj]\n")
    (message,) = errors_of(["--config", path])
    assert message == (f"{path}:3: lora.lora_target_modules: unknown module name 'v_porj'; did you mean v_proj? "
                       "valid names: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj")


def test_lr_decay_style_is_one_of_three(tmp_path):
    (message,) = errors_of(["--config", write(tmp_path, "training: {lr_decay_style: cosin}\n")])
    assert "training.lr_decay_style: got 'cosin'" in message and "'cosine', 'linear' or 'constant'" in message


def test_split_must_be_three_numbers_summing_to_100(tmp_path):
    for bad in ("90,5", "90,5,1", "a,b,c", "110,-10,0"):
        path = write(tmp_path, f"data: {{split: '{bad}'}}\n")
        (message,) = errors_of(["--config", path])
        assert "data.split" in message and "summing to 100" in message or "three numbers" in message


def test_lora_keys_need_use_lora(tmp_path):
    path = write(tmp_path, "lora: {lora_rank: 8}\ncheckpointing: {save_lora_only: true}\n")
    messages = errors_of(["--config", path])
    assert any(f"{path}:1: lora.lora_rank is set but lora.use_lora is false" in m for m in messages)
    assert any("save_lora_only: needs LoRA" in m for m in messages)
    load(["--config", path, "--use_lora"])


def test_use_lora_false_alone_is_fine(tmp_path):
    load(["--config", write(tmp_path, "lora: {use_lora: false}\n")])


def test_other_framework_is_refused_with_reason():
    (message,) = errors_of(["--framework", "megatron"])
    assert message.startswith("cli --framework:") and "post-training" in message and "pre-training" in message.lower()


def test_duplicate_key_and_bad_yaml_name_the_line(tmp_path):
    dup = write(tmp_path, "training:\n  lr: 1\n  lr: 2\n")
    assert "duplicate key 'lr'" in errors_of(["--config", dup])[0] and ":3:" in errors_of(["--config", dup])[0]
    broken = write(tmp_path, "training: [1,\n", "b.yaml")
    assert "invalid YAML" in errors_of(["--config", broken])[0]


def test_set_generic_override(tmp_path):
    cfg, origins = load(["--set", "data.packing=false", "--set", "training.weight_decay=0.1"])
    assert cfg.data.packing is False and cfg.training.weight_decay == 0.1
    assert origins["data.packing"] == "cli --set data.packing"


@pytest.mark.parametrize("argv", [
    ["train", "--config", "{bad}"],
    ["print-config", "--config", "{bad}"],
])
def test_config_error_exits_2_without_traceback(tmp_path, argv):
    bad = write(tmp_path, "training:\n  lr_warmup_iter: 1\n")
    argv = [a.replace("{bad}", bad) for a in argv]
    out = subprocess.run([sys.executable, "-m", "primus_bridge", *argv], capture_output=True, text=True)
    assert out.returncode == 2
    assert "did you mean training.lr_warmup_iters?" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) <= 2


def test_an_unknown_gpu_type_is_refused_with_the_known_ones():
    from primus_bridge.hardware import GPU_TYPES

    with pytest.raises(ValidationError, match="'a100' is not a GPU type .* use one of mi300x"):
        PrimusConfig.model_validate({"gpu": "a100"})
    assert all(PrimusConfig.model_validate({"gpu": key}).gpu == key for key in GPU_TYPES)
