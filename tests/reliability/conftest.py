"""Real training subprocesses on a tiny Llama (2 layers, hidden 64, seq 128) for the reliability tests."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from primus_bridge.models.tiny import TinyLlamaSpec, build_tiny_llama

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return build_tiny_llama(REPO / "examples/tokenizer", tmp_path_factory.mktemp("tiny-llama") / "model",
                            TinyLlamaSpec())


@pytest.fixture(scope="session")
def run_config(tiny_llama, tmp_path_factory):
    """run_config(run_dir, **training) -> path of a YAML for a 16-step LoRA run (dropout on, so RNG matters)."""
    cache = tmp_path_factory.mktemp("data-cache")

    def write(run_dir: Path, checkpointing: dict | None = None, export: bool = False, **training) -> Path:
        values = {
            "engine": "hf", "hf_model_name_or_path": str(tiny_llama),
            "lora": {"use_lora": True, "lora_rank": 8, "lora_alpha": 16, "lora_dropout": 0.1,
                     "lora_target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
            "training": {"micro_batch_size": 2, "global_batch_size": 4, "train_iters": 16, "lr": 1e-2,
                         "min_lr": 1e-3, "lr_warmup_iters": 2, "eval_interval": 6, "eval_iters": 1,
                         "log_interval": 1, **training},
            "data": {"data_path": str(REPO / "examples/data/alpaca_sample.jsonl"), "dataset_format": "alpaca",
                     "prompt_template": "alpaca", "split": "90,10,0", "seq_length": 128, "cache_dir": str(cache)},
            "checkpointing": {"save": str(run_dir / "checkpoints"), "save_interval": 4, **(checkpointing or {})},
            "convert_to_hf": export, "hf_save_path": str(run_dir / "hf_model"),
        }
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / "config.yaml"
        path.write_text(yaml.safe_dump(values))
        return path

    return write


def train_command(config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "primus_bridge.train", "--config", str(config), *extra]


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return {**env, **extra}


def run_to_end(config: Path, env: dict | None = None, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(train_command(config, *extra), cwd=REPO, env=env or child_env(), capture_output=True,
                          text=True, timeout=300)


def start_until(config: Path, marker: str) -> tuple[subprocess.Popen, list[str]]:
    """Start training and read its output until a line contains `marker`: (the running process, lines so far)."""
    process = subprocess.Popen(train_command(config), cwd=REPO, env=child_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in process.stdout:
        lines.append(line)
        if marker in line:
            break
    return process, lines


@pytest.fixture(scope="session")
def subprocess_tools():
    """The helpers above, for test modules (conftest functions are not importable by name)."""
    return {"command": train_command, "env": child_env, "run": run_to_end, "repo": REPO, "start_until": start_until}
