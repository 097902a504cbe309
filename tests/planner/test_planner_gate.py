"""train's memory check: GPU runs of a known model that will not fit are refused unless forced."""

import argparse
import logging
import subprocess
import sys

import pytest

import recipes
from primus_bridge.config import ConfigError, add_config_arguments, load_config
from primus_bridge.planner.gate import check_memory_before_training, plan_before_training
from primus_bridge.planner.source import find_model_shape

TOO_BIG = ["--recipe", "llama3_8b", "--gpu", "h100", "--set", "parallelism.tensor_model_parallel_size=1",
           "--set", "parallelism.sequence_parallel=false", "--micro_batch_size", "2", "--global_batch_size", "64"]


def config(*argv):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return load_config(parser.parse_args(list(argv)))


@pytest.fixture
def eight_gpu_job(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")


def test_cpu_runs_are_never_planned():
    cfg = config(*TOO_BIG)
    assert plan_before_training(cfg, visible_gpus=0) is None
    check_memory_before_training(cfg, logging.getLogger("test"), visible_gpus=0)  # does not raise


def test_unknown_model_is_not_planned(eight_gpu_job):
    assert plan_before_training(config("--gpu", "h100"), visible_gpus=8) is None


def test_refuses_a_run_that_will_not_fit(eight_gpu_job, caplog):
    with pytest.raises(ConfigError) as info:
        check_memory_before_training(config(*TOO_BIG), logging.getLogger("test"), visible_gpus=8)
    (message,) = info.value.messages
    assert "will not fit" in message and "of 79.1 GiB" in message and "--force" in message
    assert "activations" in caplog.text and "to make it fit" in caplog.text


def test_force_goes_on(eight_gpu_job, caplog):
    check_memory_before_training(config(*TOO_BIG, "--force"), logging.getLogger("test"), visible_gpus=8)
    assert "starting anyway" in caplog.text


def test_a_fitting_run_logs_its_headroom(eight_gpu_job, caplog):
    """The GPU type comes from the machine when the config does not name one."""
    caplog.set_level(logging.INFO)
    cfg = config("--recipe", "llama3_8b", "--gpu", "h200")
    cfg.gpu = None
    check_memory_before_training(cfg, logging.getLogger("test"), visible_gpus=8, visible_type="h200")
    assert "memory plan:" in caplog.text and "headroom" in caplog.text


def test_local_model_folder_wins_over_the_recipe(tmp_path):
    recipes.recipe("llama32_1b").shape.hf_config().save_pretrained(tmp_path)
    source = find_model_shape(config("--recipe", "llama3_8b", "--gpu", "h100",
                                     "--hf_model_name_or_path", str(tmp_path)))
    assert source.shape.num_layers == 16 and source.origin.endswith("config.json")
    assert find_model_shape(config("--recipe", "llama3_8b", "--gpu", "h100")).origin == "recipe llama3_8b"


def test_unsupported_model_type_names_the_file_and_does_not_block_training(tmp_path, eight_gpu_job, caplog):
    (tmp_path / "config.json").write_text('{"model_type": "mixtral", "num_attention_heads": 8}')
    cfg = config("--hf_model_name_or_path", str(tmp_path), "--gpu", "h100")
    with pytest.raises(ValueError, match="config.json: cannot read the model shape.*mixtral"):
        find_model_shape(cfg)
    caplog.set_level(logging.INFO)
    check_memory_before_training(cfg, logging.getLogger("test"), visible_gpus=8)
    assert "memory plan skipped" in caplog.text and "mixtral" in caplog.text


@pytest.mark.gpu
def test_train_refuses_before_loading_anything_on_a_gpu():
    """On the GPU machine: a 405B full fine-tune on one GPU is refused with exit code 2 in seconds."""
    out = subprocess.run([sys.executable, "-m", "primus_bridge.train", "--recipe", "llama31_405b", "--gpu", "h200",
                          "--set", "parallelism.tensor_model_parallel_size=1",
                          "--set", "parallelism.sequence_parallel=false",
                          "--set", "parallelism.pipeline_model_parallel_size=1"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "will not fit" in out.stderr
