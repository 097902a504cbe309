"""A resumed run's config against its checkpoint's: honoured changes pass and are listed, others are refused."""

import json

import pytest

from primus_bridge.checkpoint import MARKER_FILE
from primus_bridge.config import ConfigError, PrimusConfig
from primus_bridge.run.resume_config import changes_record, check_resume_config, config_changes, config_dump

BASE = {"engine": "hf", "hf_model_name_or_path": "/models/llama", "data": {"data_path": "/data/a.jsonl",
        "seq_length": 512}, "lora": {"use_lora": True, "lora_rank": 16}, "training": {"train_iters": 100},
        "checkpointing": {"save": "/ck"}}


def config(**changes) -> PrimusConfig:
    values = json.loads(json.dumps(BASE))
    for dotted, value in changes.items():
        section, _, key = dotted.partition("__")
        (values.setdefault(section, {}) if key else values)[key or section] = value
    return PrimusConfig.model_validate(values)


def saved(cfg: PrimusConfig) -> dict:
    import yaml

    return yaml.safe_load(config_dump(cfg))


def test_schedule_length_and_intervals_are_honoured_and_listed():
    refused, honoured = config_changes(saved(config()), config(training__train_iters=300, training__log_interval=5,
                                                                checkpointing__keep_last=2))
    assert refused == {}
    assert honoured == {"training.train_iters": (100, 300), "training.log_interval": (1, 5),
                        "checkpointing.keep_last": (None, 2)}
    assert changes_record(100, honoured)["changes"]["training.train_iters"] == [100, 300]


@pytest.mark.parametrize(("change", "key"), [
    ({"lora__lora_rank": 4}, "lora.lora_rank"),
    ({"lora__lora_target_modules": ["q_proj"]}, "lora.lora_target_modules"),
    ({"data__data_path": "/data/b.jsonl"}, "data.data_path"),
    ({"data__dataset_format": "sharegpt"}, "data.dataset_format"),
    ({"data__prompt_template": "chatml"}, "data.prompt_template"),
    ({"data__seq_length": 1024}, "data.seq_length"),
    ({"hf_model_name_or_path": "/models/other"}, "hf_model_name_or_path"),
    ({"training__lr": 1e-4}, "training.lr"),
])
def test_changes_a_resume_cannot_honour_are_refused(change, key):
    refused, _ = config_changes(saved(config()), config(**change))
    assert list(refused) == [key]


def test_keys_the_checkpoint_predates_count_as_their_defaults():
    old = saved(config())
    del old["training"]["skip_nonfinite_steps"]
    assert config_changes(old, config()) == ({}, {})


def test_the_refusal_lists_every_difference_with_both_values(tmp_path):
    (tmp_path / MARKER_FILE).write_text(json.dumps({"engine": "hf"}))
    (tmp_path / "run_config.yaml").write_text(config_dump(config()))
    assert check_resume_config(tmp_path, config(training__train_iters=200)) == {"training.train_iters": (100, 200)}
    with pytest.raises(ConfigError) as refused:
        check_resume_config(tmp_path, config(lora__lora_rank=4, data__seq_length=1024))
    message = refused.value.messages[0]
    assert "data.seq_length: 512 -> 1024; lora.lora_rank: 16 -> 4" in message and "fresh --save folder" in message
