"""A tiny Llama (2 layers, hidden 64) with the project tokenizer, and small configs for the hf engine on CPU."""

from pathlib import Path

import pytest

from primus_bridge.config import PrimusConfig
from primus_bridge.models.tiny import TinyLlamaSpec, build_tiny_llama

REPO = Path(__file__).resolve().parents[3]
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return build_tiny_llama(REPO / "examples/tokenizer", tmp_path_factory.mktemp("tiny-llama") / "model",
                            TinyLlamaSpec())


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data-cache")


def hf_config(model: Path, data_cache: Path, run_dir: Path, lora: bool = True, chat: bool = False,
              **training) -> PrimusConfig:
    """A short CPU run on the shipped samples (sharegpt + chatml with chat=True, else alpaca)."""
    data = {"data_path": str(REPO / "examples/data/sharegpt_sample.jsonl"), "dataset_format": "sharegpt",
            "chat_format": "chatml"} if chat else \
        {"data_path": str(REPO / "examples/data/alpaca_sample.jsonl"), "dataset_format": "alpaca",
         "prompt_template": "alpaca"}
    values = {
        "engine": "hf", "hf_model_name_or_path": str(model),
        "training": {"micro_batch_size": 2, "global_batch_size": 4, "train_iters": 12, "lr": 1e-2, "min_lr": 1e-3,
                     "lr_warmup_iters": 2, "eval_interval": 6, "eval_iters": 1, "log_interval": 4, **training},
        "data": {**data, "split": "90,10,0", "seq_length": 128, "cache_dir": str(data_cache)},
        "checkpointing": {"save": str(run_dir / "checkpoints"), "save_interval": 6},
        "convert_to_hf": True, "hf_save_path": str(run_dir / "hf_model"),
    }
    if lora:
        values["lora"] = {"use_lora": True, "lora_rank": 8, "lora_alpha": 16, "lora_dropout": 0.0,
                          "lora_target_modules": ALL_LINEAR}
    return PrimusConfig.model_validate(values)


@pytest.fixture
def make_config(tiny_llama, data_cache, tmp_path):
    """make_config(lora=True, chat=False, run_dir=tmp_path, **training) -> PrimusConfig."""
    def make(lora: bool = True, chat: bool = False, run_dir: Path = tmp_path, **training) -> PrimusConfig:
        return hf_config(tiny_llama, data_cache, run_dir, lora, chat, **training)
    return make
